package apiclient

import (
	"context"
	"fmt"
	"io"
	"net/http"

	"github.com/coder/websocket"
)

// ConsoleSubprotocol is the websocket subprotocol of the console routes: binary
// messages both ways.
const ConsoleSubprotocol = "binary"

// DialConsole opens a server's console, kind "serial" or "vnc", as a websocket
// over the client's TLS settings and credentials. Messages are binary both ways:
// for the serial console, the guest's output (its recent history first) one way and
// keystrokes the other. A refusal (the server never ran, not yours) is an *Error
// with the API's message. The caller closes the connection.
func (c *Client) DialConsole(ctx context.Context, id, kind string) (*websocket.Conn, error) {
	if c.err != nil {
		return nil, c.err
	}
	h := http.Header{}
	if c.auth != nil {
		// The auth types set headers on a request; borrow one to get them.
		req, _ := http.NewRequest("GET", c.base, nil)
		c.auth.authorize(req)
		h = req.Header
	}
	ws, resp, err := websocket.Dial(ctx, c.base+Prefix+"/servers/"+esc(id)+"/console/"+esc(kind), &websocket.DialOptions{
		// The client's timeout bounds the handshake only.
		HTTPClient:   c.http,
		HTTPHeader:   h,
		Subprotocols: []string{ConsoleSubprotocol},
	})
	if err != nil {
		if resp != nil && resp.StatusCode >= 400 {
			var body []byte
			if resp.Body != nil {
				body, _ = io.ReadAll(resp.Body)
			}
			return nil, c.apiError(resp.StatusCode, body)
		}
		return nil, fmt.Errorf("open the %s console of server %s at %s: %w", kind, id, c.base, err)
	}
	// A serial console's history may come in pieces up to 32 KiB, a VNC frame
	// update in larger ones.
	ws.SetReadLimit(16 << 20)
	return ws, nil
}
