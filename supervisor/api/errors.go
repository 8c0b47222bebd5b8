package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/cairn-os/cairn/supervisor/engine"
)

// errorBody is every error answer: {"error": "what is wrong and what to do"}.
type errorBody struct {
	Error string `json:"error"`
}

// statusOf is THE mapping of errors to HTTP status codes.
//
// ErrQuota is 409 Conflict, like ErrExists and ErrInUse: the request is well formed
// and allowed, but the engine's current state (the user's usage against their quota)
// does not let it through until something is freed.
func statusOf(err error) int {
	var tooBig *http.MaxBytesError
	switch {
	case errors.Is(err, engine.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, engine.ErrExists), errors.Is(err, engine.ErrInUse), errors.Is(err, engine.ErrQuota):
		return http.StatusConflict
	case errors.Is(err, engine.ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, engine.ErrUnauthorized):
		return http.StatusUnauthorized
	case errors.Is(err, engine.ErrForbidden):
		return http.StatusForbidden
	case errors.Is(err, engine.ErrUnavailable):
		return http.StatusServiceUnavailable
	case errors.Is(err, errUnsupportedMedia):
		return http.StatusUnsupportedMediaType
	case errors.As(err, &tooBig):
		return http.StatusRequestEntityTooLarge
	default:
		return http.StatusInternalServerError
	}
}

// writeError answers with err's status and message. An unexpected error is logged
// here, once, and the caller gets a generic message.
func (s *server) writeError(w http.ResponseWriter, r *http.Request, rt route, err error) {
	status := statusOf(err)
	msg := err.Error()
	switch status {
	case http.StatusInternalServerError:
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		msg = "internal error; the engine's log has the details"
	case http.StatusRequestEntityTooLarge:
		msg = fmt.Sprintf("the body is larger than %d bytes; send less", maxBody)
	case http.StatusUnauthorized:
		switch rt.access {
		case accessUser, accessAdmin, accessOwn:
			w.Header().Set("WWW-Authenticate", `Basic realm="cairn"`)
			w.Header().Add("WWW-Authenticate", `Bearer realm="cairn"`)
		case accessJoinToken:
			w.Header().Set("WWW-Authenticate", `Bearer realm="cairn-join"`)
		}
	}
	writeJSON(w, status, errorBody{Error: msg})
}

// writeJSON answers with v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// decodeJSON reads the request's JSON body into v.
func decodeJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			return err
		case errors.Is(err, io.EOF):
			return fmt.Errorf("%w: send a JSON body", engine.ErrInvalid)
		default:
			return fmt.Errorf("%w: the body is not the JSON this route takes (%v); see %s/openapi.json", engine.ErrInvalid, err, Prefix)
		}
	}
	if dec.More() {
		return fmt.Errorf("%w: send one JSON value in the body", engine.ErrInvalid)
	}
	return nil
}
