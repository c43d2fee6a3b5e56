package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// maxInputFile bounds the small YAML files a flag names (run --config,
// device --product): a few hundred bytes each. A bigger file is a wrong
// file (a capture, a log) and is refused before it is read whole.
const maxInputFile = 1 << 20

// readInputFile reads the file that flag (--config) names, at most
// maxInputFile bytes. Its errors are usage errors naming the flag.
func readInputFile(flag, path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, inputError(flag, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxInputFile+1))
	if err != nil {
		return nil, inputError(flag, err)
	}
	if len(b) > maxInputFile {
		return nil, usageErrorf("%s: %s: larger than %d bytes: not a YAML file of this command", flag, path, maxInputFile)
	}
	return b, nil
}

var (
	yamlLineMsg = regexp.MustCompile(`^line (\d+): (.*)$`)
	// yamlGoType matches the Go type names yaml.v3 puts in its messages
	// ("into cli.targetFile", "in type reports.Product", "into
	// struct { SymmetricKey string "yaml:…" }").
	yamlGoType = regexp.MustCompile(`\b(in type|into) (?:\[\])?(?:\*?[a-z]\w*\.\w+|struct \{[^\n]*\})`)
)

// yamlFileError rewrites an error of yaml.v3 decoding file (data its
// content) as "FILE:LINE: what", or "FILE:LINE:COL: what" for a syntax
// error of a file written as JSON (encoding/json finds the byte; yaml.v3
// gives no column, and no line at all when the file is one line long). The Go type names yaml puts in its messages
// become what, the kind of thing the user wrote ("a target file"); fields,
// when not "", lists the fields an unknown field could have been.
func yamlFileError(file string, data []byte, err error, what, fields string) string {
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg := te.Errors[0]
		line := ""
		if m := yamlLineMsg.FindStringSubmatch(msg); m != nil {
			line, msg = ":"+m[1], m[2]
		}
		msg = yamlGoType.ReplaceAllStringFunc(msg, func(s string) string {
			nested := strings.Contains(s, "struct {") // a section of the file
			switch {
			case strings.HasPrefix(s, "into ") && nested:
				return "into this section"
			case strings.HasPrefix(s, "into "):
				return "into " + what
			case !nested && fields != "":
				return "(fields: " + fields + ")"
			default:
				return "in this section"
			}
		})
		if n := len(te.Errors) - 1; n > 0 {
			msg += fmt.Sprintf(" (and %d more)", n)
		}
		return file + line + ": " + msg
	}
	if line, col, jmsg, ok := jsonSyntaxError(data); ok {
		return fmt.Sprintf("%s:%d:%d: %s", file, line, col, jmsg)
	}
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if m := yamlLineMsg.FindStringSubmatch(msg); m != nil {
		return file + ":" + m[1] + ": " + m[2]
	}
	return file + ": " + msg
}

// jsonSyntaxError reports where data, when it is written as JSON (its
// first byte past white space is '{' or '['), breaks JSON's syntax: the
// line and column (1-based, in characters) and encoding/json's message.
func jsonSyntaxError(data []byte) (line, col int, msg string, ok bool) {
	t := bytes.TrimLeft(data, " \t\r\n")
	if len(t) == 0 || t[0] != '{' && t[0] != '[' {
		return 0, 0, "", false
	}
	var v any
	var se *json.SyntaxError
	if !errors.As(json.Unmarshal(data, &v), &se) {
		return 0, 0, "", false
	}
	// Offset counts the bytes read when the error was found: the bad
	// byte is the last of them, unless the input ran out.
	off, msg := int(se.Offset), se.Error()
	if off >= len(data) && strings.HasPrefix(msg, "unexpected end") {
		off, msg = len(data), "the file ends inside a JSON value"
	} else if off > 0 {
		off--
	}
	before := data[:min(off, len(data))]
	line = 1 + bytes.Count(before, []byte("\n"))
	col = 1 + utf8.RuneCount(before[bytes.LastIndexByte(before, '\n')+1:])
	return line, col, msg, true
}
