package api

import (
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strings"

	"github.com/cairn-os/cairn/supervisor/engine"
)

// errUnsupportedMedia is a body that is not JSON.
var errUnsupportedMedia = errors.New("unsupported media type")

// checkContentType refuses bodies that are not application/json: forms, text and
// anything a browser sends cross-site without asking.
func checkContentType(r *http.Request, rt route) error {
	ct := r.Header.Get("Content-Type")
	hasBody := r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody
	if rt.body != "" {
		if !hasBody {
			return nil
		}
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != rt.body {
			return fmt.Errorf("%w: send the body with Content-Type: %s (got %q)", errUnsupportedMedia, rt.body, ct)
		}
		return nil
	}
	if !hasBody && (ct == "" || r.Method == http.MethodGet || r.Method == http.MethodHead || r.Method == http.MethodDelete) {
		return nil
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" {
		return fmt.Errorf("%w: send the body as JSON with Content-Type: application/json (got %q)", errUnsupportedMedia, ct)
	}
	return nil
}

// authenticate finds the caller for rt's access level, or says why it may not call.
func (s *server) authenticate(r *http.Request, rt route) (caller, error) {
	switch rt.access {
	case accessPublic:
		return caller{}, nil

	case accessJoinToken:
		tok, ok := bearer(r)
		if !ok || tok == "" {
			return caller{}, fmt.Errorf("%w: send the join token as Authorization: Bearer <token>", engine.ErrUnauthorized)
		}
		return caller{joinToken: tok}, nil

	case accessNodeCert:
		if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
			return caller{}, fmt.Errorf("%w: present the node's certificate from its join (mutual TLS)", engine.ErrUnauthorized)
		}
		id, err := s.e.CA().VerifyNode(r.TLS.PeerCertificates[0])
		if err != nil {
			return caller{}, fmt.Errorf("%w: the client certificate is not a node certificate of this engine; join again", engine.ErrUnauthorized)
		}
		if want := r.PathValue("id"); id != want {
			return caller{}, fmt.Errorf("%w: the certificate is node %q's, not %q's", engine.ErrForbidden, id, want)
		}
		return caller{node: id}, nil
	}

	u, err := s.user(r)
	if err != nil {
		return caller{}, err
	}
	if rt.access == accessAdmin && u.Role != engine.RoleAdmin {
		return caller{}, fmt.Errorf("%w: only admins can %s", engine.ErrForbidden, strings.ToLower(rt.summary))
	}
	if u.Role == engine.RoleReadonly && rt.access != accessOwn && r.Method != http.MethodGet && r.Method != http.MethodHead {
		return caller{}, fmt.Errorf("%w: user %q is readonly and can only look", engine.ErrForbidden, u.Name)
	}
	return caller{user: u}, nil
}

// user authenticates a person or script: Basic or an API token.
func (s *server) user(r *http.Request) (engine.User, error) {
	if name, password, ok := r.BasicAuth(); ok {
		u, err := s.e.Authenticate(r.Context(), name, password)
		if err != nil {
			s.log.Info("sign in refused", "user", name, "remote", r.RemoteAddr)
		}
		return u, err
	}
	if tok, ok := bearer(r); ok {
		return s.e.TokenUser(r.Context(), tok)
	}
	if r.Header.Get("Authorization") != "" {
		return engine.User{}, fmt.Errorf("%w: use Authorization: Basic (name:password) or Bearer <api token>", engine.ErrUnauthorized)
	}
	return engine.User{}, fmt.Errorf("%w: sign in with HTTP Basic (name:password) or Authorization: Bearer <api token>; `cairn login` makes a token", engine.ErrUnauthorized)
}

// bearer returns the token of an "Authorization: Bearer" header.
func bearer(r *http.Request) (string, bool) {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	return strings.TrimSpace(tok), true
}
