package networks

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/cairn-os/cairn/internal/enginetest"
	"github.com/cairn-os/cairn/supervisor/engine"
)

// TestWithTheRealEngine goes through a network's and a mapping's life with the
// engine itself behind the pages: what the engine allocates is what the pages show,
// and its refusals come through with their messages and statuses.
func TestWithTheRealEngine(t *testing.T) {
	ctx := context.Background()
	e, admin := enginetest.Open(t)
	if _, err := e.RegisterLocalNode(ctx, engine.JoinRequest{Name: "admin", MAC: "52:54:00:00:00:01", Address: "10.0.0.1", CPUs: 4, MemoryBytes: 8 << 30}); err != nil {
		t.Fatal(err)
	}
	s, err := e.CreateServer(ctx, admin, engine.ServerRequest{Name: "web1", VCPUs: 1, MemoryMiB: 256})
	if err != nil {
		t.Fatal(err)
	}

	if rec := do(t, e, admin, http.MethodPost, "/networks", "name=lab&dns=9.9.9.9"); rec.Code != http.StatusSeeOther {
		t.Fatalf("create network: %d\n%s", rec.Code, rec.Body.String())
	}
	nets, err := e.Networks(ctx, admin)
	if err != nil || len(nets) != 1 {
		t.Fatalf("networks: %+v %v", nets, err)
	}
	lab := nets[0]
	id := strconv.Itoa(lab.ID)
	mustContain(t, "the networks page", do(t, e, admin, http.MethodGet, "/networks", "").Body.String(),
		`<tr id="network-`+id+`"`, lab.Prefix, lab.Gateway, "9.9.9.9")

	// A bad port list: the engine's message, as a bad request.
	mapping := url.Values{"name": {"web-public"}, "kind": {"mapping"}, "network": {id}, "ports": {"80,http"}, "server": {s.ID}}
	rec := do(t, e, admin, http.MethodPost, "/connections", mapping.Encode())
	if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "port &#34;http&#34; must be a number from 1 to 65535") {
		t.Errorf("bad port list: %d\n%s", rec.Code, rec.Body.String())
	}
	// No external range yet: the engine says who sets one.
	mapping.Set("ports", "80,443,192.168.0.0/16:445")
	rec = do(t, e, admin, http.MethodPost, "/connections", mapping.Encode())
	if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "an admin sets external_range") {
		t.Errorf("mapping without an external range: %d", rec.Code)
	}
	settings := url.Values{"external_range": {"198.51.100.10-198.51.100.20"}, "external_quota": {"2"}, "dns": {"1.1.1.1"}}
	if rec := do(t, e, admin, http.MethodPost, "/networks/settings", settings.Encode()); rec.Code != http.StatusSeeOther {
		t.Fatalf("settings: %d\n%s", rec.Code, rec.Body.String())
	}
	if rec := do(t, e, admin, http.MethodPost, "/connections", mapping.Encode()); rec.Code != http.StatusSeeOther {
		t.Fatalf("create mapping: %d\n%s", rec.Code, rec.Body.String())
	}
	conns, err := e.Connections(ctx, admin)
	if err != nil || len(conns) != 1 || conns[0].Server != s.ID || conns[0].External != "198.51.100.10" {
		t.Fatalf("connections: %+v %v", conns, err)
	}
	c := conns[0]
	page := do(t, e, admin, http.MethodGet, "/connections", "").Body.String()
	mustContain(t, "the connections page", page, `<td class="mono" data-address>`+c.Address+`</td><td class="mono" data-external>198.51.100.10</td>`,
		"80,443,192.168.0.0/16:445", `<a href="/servers/`+s.ID+`">web1</a>`, `data-usage="external">1 of 2<`)

	// In use: the network stays, and the page says which connection holds it.
	rec = do(t, e, admin, http.MethodPost, "/networks/"+id+"/delete", "confirm=yes")
	if rec.Code != http.StatusConflict || !strings.Contains(rec.Body.String(), "connections "+c.ID+" are on it; delete them first") {
		t.Errorf("delete a network in use: %d\n%s", rec.Code, rec.Body.String())
	}
	if rec := do(t, e, admin, http.MethodPost, "/connections/"+c.ID+"/detach", ""); rec.Code != http.StatusSeeOther {
		t.Fatalf("detach: %d\n%s", rec.Code, rec.Body.String())
	}
	if got, _ := e.Server(ctx, admin, s.ID); len(got.NICs) != 0 {
		t.Errorf("the server still has NICs after the detach: %+v", got.NICs)
	}
	if rec := do(t, e, admin, http.MethodPost, "/connections/"+c.ID+"/delete", "confirm=yes"); rec.Code != http.StatusSeeOther {
		t.Fatalf("delete connection: %d\n%s", rec.Code, rec.Body.String())
	}
	if rec := do(t, e, admin, http.MethodPost, "/networks/"+id+"/delete", "confirm=yes"); rec.Code != http.StatusSeeOther {
		t.Fatalf("delete network: %d\n%s", rec.Code, rec.Body.String())
	}
	if nets, _ := e.Networks(ctx, admin); len(nets) != 0 {
		t.Errorf("networks after the delete: %+v", nets)
	}
}
