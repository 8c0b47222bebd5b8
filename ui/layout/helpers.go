package layout

import (
	"encoding/json"
	"net/http"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/cairn-os/cairn/supervisor/engine"
)

// title is the document title of a page.
func title(page string) string {
	if page == "" {
		return "Cairn"
	}
	return page + " · Cairn"
}

// csrfHeaders is the hx-headers value that makes htmx send the CSRF token.
func csrfHeaders(token string) string {
	b, _ := json.Marshal(map[string]string{CSRFHeader: token})
	return string(b)
}

// initial is the letter of a user's avatar.
func initial(name string) string {
	r, _ := utf8.DecodeRuneInString(name)
	if r == utf8.RuneError {
		return "?"
	}
	return string(unicode.ToUpper(r))
}

func roleLabel(r engine.Role) string {
	switch r {
	case engine.RoleAdmin:
		return "Administrator"
	case engine.RoleReadonly:
		return "Read-only"
	case engine.RoleUser:
		return "User"
	}
	return string(r)
}

func toneClass(tone string) string {
	switch tone {
	case ToneGreen, ToneBlue, ToneAmber, ToneRed:
		return tone
	}
	return ToneGray
}

func statusText(status int) string {
	if s := http.StatusText(status); s != "" {
		return s
	}
	return "Error"
}

// Capitalize returns s with its first letter upper-case ("ready" → "Ready").
func Capitalize(s string) string {
	r, n := utf8.DecodeRuneInString(s)
	if r == utf8.RuneError {
		return s
	}
	return string(unicode.ToUpper(r)) + strings.ToLower(s[n:])
}
