package dps

import (
	"fmt"
	"strings"
)

// cutParam splits the "key=value" parameter that starts at off (just after
// its '?' or '&') in a topic query, a username or a SAS token. It returns the
// parameter's text, its key and value, whether it has a '=', and the offset
// of the '&' that ends it (len(s) for the last one).
func cutParam(s string, off int) (text, key, value string, hasEq bool, end int) {
	end = len(s)
	if amp := strings.IndexByte(s[off:], '&'); amp >= 0 {
		end = off + amp
	}
	text = s[off:end]
	key, value, hasEq = strings.Cut(text, "=")
	return text, key, value, hasEq, end
}

// paramProblem says why a topic-query or username parameter cannot be used,
// or returns "". noun names the parameter in the message.
func paramProblem(noun, text, key string, hasEq bool) string {
	switch {
	case text == "":
		return "empty " + noun
	case !hasEq:
		return fmt.Sprintf("%s %q has no \"=\"", noun, truncate(text))
	case key == "":
		return noun + " with empty name"
	}
	return ""
}
