package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/dps-conform/dps-conform/emulator/registry"
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

// decodeYAMLFile decodes file (data its content), the one YAML document
// of a file that flag names, into v, strictly (a field v lacks is an
// error); io.EOF when it holds none. A second document is refused, one
// that does not parse included: what it holds would be dropped unread.
// Errors are usage errors naming flag and file:line; what and fields are
// yamlFileError's.
func decodeYAMLFile(flag, file string, data []byte, v any, what, fields string) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return err
		}
		return usageErrorf("%s: %s", flag, yamlFileError(file, data, err, what, fields))
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		return usageErrorf("%s: %s:%d: more than one YAML document", flag, file, extra.Line)
	case !errors.Is(err, io.EOF):
		return usageErrorf("%s: %s", flag, yamlFileError(file, data, err, what, fields))
	}
	return nil
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
	if ce := registry.JSONSyntaxError(data, file); ce != nil {
		return ce.Error() // file:line:col: msg
	}
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if m := yamlLineMsg.FindStringSubmatch(msg); m != nil {
		return file + ":" + m[1] + ": " + m[2]
	}
	return file + ": " + msg
}
