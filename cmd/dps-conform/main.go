// Command dps-conform checks Azure IoT DPS behaviour; the CLI lives in internal/cli.
package main

import (
	"os"

	"github.com/dps-conform/dps-conform/internal/cli"
)

func main() { os.Exit(cli.Run()) }
