package servers

import (
	"net/http"
	"net/url"
	"slices"
	"testing"
)

func TestListAndPageShowTheServersAddresses(t *testing.T) {
	e := newEnv(t)
	list := e.get(alice, "/servers").Body.String()
	mustContain(t, "alice's list", list, "<th>Addresses</th>", "<div>10.1.2.10 → 198.51.100.7</div>")

	page := e.get(alice, "/servers/s-1").Body.String()
	mustContain(t, "web-1's page", page,
		`<tr data-mac="52:54:00:aa:00:01" data-connection="c-lan">`, `href="/connections#connection-c-lan">web-public</a>`,
		`<td class="mono" data-address>10.1.2.10</td>`, "198.51.100.7", ">Mapping<",
		`action="/servers/s-1/connections/c-lan/detach"`,
		// Only alice's detached connection is offered; bob's is not, nor the attached one.
		`<option value="c-free">spare — internal 10.1.2.11 (c-free)</option>`)
	mustNotContain(t, "web-1's page", page, `<option value="c-bob"`, `<option value="c-lan"`)
}

func TestAttachAndDetachAConnectionFromTheServersPage(t *testing.T) {
	e := newEnv(t)
	rec := e.post(alice, "/servers/s-2/connections", url.Values{"connection": {"c-free"}})
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/servers/s-2" {
		t.Fatalf("attach: %d %q", rec.Code, rec.Header().Get("Location"))
	}
	page := e.get(alice, "/servers/s-2").Body.String()
	mustContain(t, "db-1 after the attach", page, `data-connection="c-free"`, `<td class="mono" data-address>10.1.2.11</td>`,
		"No detached connections to attach")

	// Attached elsewhere already: the engine's message, as a conflict.
	rec = e.post(alice, "/servers/s-2/connections", url.Values{"connection": {"c-lan"}})
	if rec.Code != http.StatusConflict {
		t.Errorf("attach an attached connection: %d, want 409", rec.Code)
	}
	mustContain(t, "the refusal", rec.Body.String(), `id="problem"`, "connection c-lan is attached to server s-1; detach it first")

	// A connection that is not on this server is not detached from it.
	if rec := e.post(alice, "/servers/s-2/connections/c-lan/detach", nil); rec.Code != http.StatusBadRequest ||
		slices.Contains(e.f.called(), "detach-connection c-lan") {
		t.Errorf("detach another server's connection: %d, calls %v", rec.Code, e.f.called())
	}
	rec = e.post(alice, "/servers/s-2/connections/c-free/detach", nil)
	if rec.Code != http.StatusSeeOther || !slices.Contains(e.f.called(), "detach-connection c-free") {
		t.Fatalf("detach: %d, calls %v", rec.Code, e.f.called())
	}
	mustNotContain(t, "db-1 after the detach", e.get(alice, "/servers/s-2").Body.String(), `data-connection="c-free"`)

	// The guest keeps the NIC: detached all the same, and the page says so.
	e.f.guestKeepsNIC = true
	rec = e.post(alice, "/servers/s-1/connections/c-lan/detach", nil)
	if rec.Code != http.StatusConflict {
		t.Errorf("detach that the guest did not release: %d, want 409", rec.Code)
	}
	mustContain(t, "the warning", rec.Body.String(), `id="warning"`, "did not release the NIC; it goes when the server powers off")
	mustNotContain(t, "the warning", rec.Body.String(), `data-connection="c-lan"`)

	// A read-only viewer sees no connection forms, and posting one is refused.
	if rec := e.post(reader, "/servers/s-1/connections", url.Values{"connection": {"c-free"}}); rec.Code != http.StatusForbidden {
		t.Errorf("read-only attach: %d, want 403", rec.Code)
	}
}
