package networks

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

func TestNetworksPageShowsPrefixesNameServersAndConnections(t *testing.T) {
	svc := newFake()
	rec := do(t, svc, alice, http.MethodGet, "/networks", "")
	body := rec.Body.String()
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /networks: %d", rec.Code)
	}
	rows := regexp.MustCompile(`<tr id="network-(\d+)" data-network-id="\d+" data-kind="(\w+)"`).FindAllStringSubmatch(body, -1)
	var got []string
	for _, r := range rows {
		got = append(got, r[1]+" "+r[2])
	}
	if strings.Join(got, ",") != "3 internal,5 external,6 internal" {
		t.Errorf("alice's networks: %v", got)
	}
	mustContain(t, "alice's networks", body, "10.1.2.0/24", "10.1.2.1", "Default: 9.9.9.9",
		`<li data-connection="c-lan"><a href="/connections#connection-c-lan">web-public</a> <span class="mono">10.1.2.10</span>`,
		`<li data-connection="c-ext">`, "The uplink's", `id="create-network"`, `href="/networks"`)
	mustNotContain(t, "alice's networks", body, "bobnet", "<th>Owner</th>", `id="settings"`)

	// An admin sees everyone's, with owners, and the engine's network settings.
	body = do(t, svc, root, http.MethodGet, "/networks", "").Body.String()
	mustContain(t, "the admin's networks", body, `data-network-id="4"`, "<td>bob</td>", "1.1.1.1", "<th>Owner</th>",
		`id="settings"`, `name="external_range" type="text" value="198.51.100.7-198.51.100.20"`, `name="external_quota" type="number" min="0" value="4"`)
}

func TestCreateNetworkKeepsTheFormWhenRefused(t *testing.T) {
	svc := newFake()
	rec := do(t, svc, alice, http.MethodPost, "/networks", url.Values{"name": {"office"}, "prefix": {""}, "dns": {"9.9.9.9, 1.1.1.1"}}.Encode())
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/networks?done=created#network-7" ||
		!svc.called("CreateNetwork office  [9.9.9.9 1.1.1.1]") {
		t.Fatalf("create: %d %q %v", rec.Code, rec.Header().Get("Location"), svc.calls)
	}
	rec = do(t, svc, alice, http.MethodPost, "/networks", url.Values{"name": {"office2"}, "prefix": {"10.1.2.0/24"}}.Encode())
	body := rec.Body.String()
	if rec.Code != http.StatusConflict {
		t.Errorf("overlapping prefix: %d, want 409", rec.Code)
	}
	mustContain(t, "the refusal", body, `id="create-error"`, "prefix 10.1.2.0/24 overlaps 10.1.2.0/24, which is in use",
		`value="office2"`, `value="10.1.2.0/24"`)
}

func TestDeleteNetworkInUseShowsTheEnginesMessage(t *testing.T) {
	svc := newFake()
	if rec := do(t, svc, alice, http.MethodPost, "/networks/6/delete", ""); rec.Code != http.StatusBadRequest || svc.called("DeleteNetwork") {
		t.Errorf("delete without ticking the box: %d %v", rec.Code, svc.calls)
	}
	rec := do(t, svc, alice, http.MethodPost, "/networks/3/delete", "confirm=yes")
	if rec.Code != http.StatusConflict {
		t.Errorf("delete a network in use: %d, want 409", rec.Code)
	}
	mustContain(t, "the refusal", rec.Body.String(), `id="action-error"`, "connections c-lan, c-free are on it; delete them first")
	if rec := do(t, svc, alice, http.MethodPost, "/networks/6/delete", "confirm=yes"); rec.Code != http.StatusSeeOther || !svc.called("DeleteNetwork 6") {
		t.Errorf("delete an unused network: %d %v", rec.Code, svc.calls)
	}
	// Another user's network is not found; a network is named by its number.
	if rec := do(t, svc, alice, http.MethodPost, "/networks/4/delete", "confirm=yes"); rec.Code != http.StatusNotFound {
		t.Errorf("alice deletes bob's network: %d, want 404", rec.Code)
	}
	if rec := do(t, svc, alice, http.MethodPost, "/networks/lab/delete", "confirm=yes"); rec.Code != http.StatusBadRequest ||
		!strings.Contains(rec.Body.String(), "give its number") {
		t.Errorf("delete by name: %d", rec.Code)
	}
}

func TestRenameAndNameServers(t *testing.T) {
	svc := newFake()
	rec := do(t, svc, alice, http.MethodPost, "/networks/3/update", url.Values{"name": {"lab-2"}, "dns": {"8.8.8.8 8.8.4.4"}}.Encode())
	if rec.Code != http.StatusSeeOther || !svc.called("UpdateNetwork 3 lab-2 [8.8.8.8 8.8.4.4]") {
		t.Errorf("rename with name servers: %d %v", rec.Code, svc.calls)
	}
	// An external segment's form has no name servers: they are not sent.
	rec = do(t, svc, alice, http.MethodPost, "/networks/5/update", url.Values{"name": {"uplink"}}.Encode())
	if rec.Code != http.StatusSeeOther || !svc.called("UpdateNetwork 5 uplink []") {
		t.Errorf("rename an external segment: %d %v", rec.Code, svc.calls)
	}
	body := do(t, svc, alice, http.MethodGet, "/networks", "").Body.String()
	mustContain(t, "the renamed networks", body, "lab-2", "8.8.8.8, 8.8.4.4", "uplink")
	if rec := do(t, svc, alice, http.MethodPost, "/networks/3/update", "name="); rec.Code != http.StatusBadRequest ||
		!strings.Contains(rec.Body.String(), "give 1 to 64 characters on one line") {
		t.Errorf("empty name: %d", rec.Code)
	}
}

func TestNetworkSettingsAreForAdmins(t *testing.T) {
	svc := newFake()
	form := url.Values{"external_range": {"198.51.100.0/28"}, "external_quota": {"6"}, "dns": {"1.1.1.1"}}
	rec := do(t, svc, root, http.MethodPost, "/networks/settings", form.Encode())
	if rec.Code != http.StatusSeeOther || !svc.called("UpdateSettings disperse 198.51.100.0/28 6 [1.1.1.1]") {
		t.Fatalf("admin saves settings: %d %v", rec.Code, svc.calls)
	}
	// The other settings stay as they were.
	if svc.settings.Placement != "disperse" {
		t.Errorf("placement after saving network settings: %q", svc.settings.Placement)
	}
	form.Set("external_quota", "many")
	rec = do(t, svc, root, http.MethodPost, "/networks/settings", form.Encode())
	if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "The quota is a whole number") {
		t.Errorf("a quota that is not a number: %d", rec.Code)
	}
	form.Set("external_quota", "4")
	form.Set("external_range", "uplink")
	rec = do(t, svc, root, http.MethodPost, "/networks/settings", form.Encode())
	if rec.Code != http.StatusBadRequest {
		t.Errorf("a bad range: %d, want 400", rec.Code)
	}
	mustContain(t, "the refusal", rec.Body.String(), `id="settings-error"`, "write it as FIRST-LAST or a prefix", `value="uplink"`)
	rec = do(t, svc, alice, http.MethodPost, "/networks/settings", form.Encode())
	if rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), "only admins can do this") {
		t.Errorf("a user saves settings: %d", rec.Code)
	}
}

func TestConnectionsPageShowsAddressesAndOffersWhatTheViewerOwns(t *testing.T) {
	svc := newFake()
	body := do(t, svc, alice, http.MethodGet, "/connections", "").Body.String()
	mustContain(t, "alice's connections", body,
		`<tr id="connection-c-lan" data-connection-id="c-lan" data-kind="mapping">`,
		`<td class="mono" data-address>10.1.2.10</td><td class="mono" data-external>198.51.100.7</td><td class="mono wrap">80,443</td>`,
		`<td data-server="s-1"><a href="/servers/s-1">web-1</a>`,
		`<td class="mono" data-address>198.51.100.8</td><td class="mono" data-external>198.51.100.8</td>`,
		`href="/networks#network-3">3 · lab (10.1.2.0/24)</a>`,
		`data-usage="external">2 of 4<`, `data-usage="connections">3<`,
		// The create form: alice's internal networks and her servers.
		`<option value="3">3 · lab (10.1.2.0/24)</option>`, `<option value="6">`, `<option value="s-2">db-1 (s-2)</option>`,
		`placeholder="80,443,192.168.0.0/16:445"`,
		// Attached: detach; detached: attach to one of her servers.
		`action="/connections/c-lan/detach"`, `action="/connections/c-free/attach"`, `action="/connections/c-lan/ports"`)
	mustNotContain(t, "alice's connections", body, "c-bob", `<option value="5">`, `<option value="4">`, `<option value="s-3">`,
		`action="/connections/c-free/ports"`, "<th>Owner</th>")

	body = do(t, svc, root, http.MethodGet, "/connections", "").Body.String()
	mustContain(t, "the admin's connections", body, `data-connection-id="c-bob"`, "<th>Owner</th>", "<td>bob</td>",
		// bob's connection goes on bob's servers only.
		`<select id="attach-c-bob" name="server"><option value="s-3">build-1 (s-3)</option></select>`)
}

func TestCreateMappingWithABadPortListShowsTheEnginesError(t *testing.T) {
	svc := newFake()
	form := url.Values{"name": {"web-public-2"}, "kind": {"mapping"}, "network": {"3"}, "ports": {"80,http"}, "server": {""}}
	rec := do(t, svc, alice, http.MethodPost, "/connections", form.Encode())
	body := rec.Body.String()
	if rec.Code != http.StatusBadRequest {
		t.Errorf("bad port list: %d, want 400", rec.Code)
	}
	mustContain(t, "the refusal", body, `id="create-error"`, "port list item &#34;http&#34;: port &#34;http&#34; must be a number from 1 to 65535",
		`value="80,http"`, `value="web-public-2"`, `id="kind-mapping" name="kind" value="mapping" checked`)
	if svc.called("CreateConnection") {
		t.Fatal("the engine made a connection with a bad port list")
	}

	form.Set("ports", "80,443,192.168.0.0/16:445")
	form.Set("server", "s-2")
	rec = do(t, svc, alice, http.MethodPost, "/connections", form.Encode())
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/connections?done=created#connection-c-new" ||
		!svc.called(`CreateConnection web-public-2 mapping 3 "" "" "80,443,192.168.0.0/16:445" "s-2"`) {
		t.Fatalf("create a mapping: %d %q %v", rec.Code, rec.Header().Get("Location"), svc.calls)
	}
	// The form sends every field; the engine gets those of the kind chosen.
	ext := url.Values{"kind": {"external"}, "network": {"3"}, "external": {"198.51.100.9"}, "ports": {"22"}}
	if rec := do(t, svc, alice, http.MethodPost, "/connections", ext.Encode()); rec.Code != http.StatusSeeOther ||
		!svc.called(`CreateConnection  external 0 "198.51.100.9" "" "" ""`) {
		t.Errorf("create an external connection: %d %v", rec.Code, svc.calls)
	}
	in := url.Values{"kind": {"internal"}, "network": {"6"}, "external": {"198.51.100.9"}, "ports": {"22"}}
	if rec := do(t, svc, alice, http.MethodPost, "/connections", in.Encode()); rec.Code != http.StatusSeeOther ||
		!svc.called(`CreateConnection  internal 6 "" "" "" ""`) {
		t.Errorf("create an internal connection: %d %v", rec.Code, svc.calls)
	}
	// Without a network to put it on, the console says what to do.
	rec = do(t, svc, alice, http.MethodPost, "/connections", url.Values{"kind": {"internal"}}.Encode())
	if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "Choose the network the connection is on") {
		t.Errorf("internal without a network: %d", rec.Code)
	}
}

func TestAttachDetachPortsAndDelete(t *testing.T) {
	svc := newFake()
	rec := do(t, svc, alice, http.MethodPost, "/connections/c-free/attach", "server=s-2")
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/connections?done=attached#connection-c-free" || !svc.called("AttachConnection c-free s-2") {
		t.Errorf("attach: %d %q %v", rec.Code, rec.Header().Get("Location"), svc.calls)
	}
	mustContain(t, "after the attach", do(t, svc, alice, http.MethodGet, "/connections?done=attached", "").Body.String(),
		`<td data-server="s-2"><a href="/servers/s-2">db-1</a>`, "The connection was attached")
	rec = do(t, svc, alice, http.MethodPost, "/connections/c-lan/attach", "server=s-2")
	if rec.Code != http.StatusConflict || !strings.Contains(rec.Body.String(), "connection c-lan is attached to server s-1; detach it first") {
		t.Errorf("attach an attached connection: %d", rec.Code)
	}

	if rec := do(t, svc, alice, http.MethodPost, "/connections/c-free/detach", ""); rec.Code != http.StatusSeeOther || !svc.called("DetachConnection c-free") {
		t.Errorf("detach: %d %v", rec.Code, svc.calls)
	}
	svc.guestKeepsNIC = true
	rec = do(t, svc, alice, http.MethodPost, "/connections/c-lan/detach", "")
	if rec.Code != http.StatusConflict {
		t.Errorf("detach that the guest did not release: %d, want 409", rec.Code)
	}
	mustContain(t, "the warning", rec.Body.String(), `id="action-warning"`, "did not release the NIC; it goes when the server powers off",
		`action="/connections/c-lan/attach"`)

	if rec := do(t, svc, alice, http.MethodPost, "/connections/c-lan/ports", "ports=udp%2F53%2C443"); rec.Code != http.StatusSeeOther ||
		!svc.called("UpdateConnection c-lan web-public udp/53,443") {
		t.Errorf("ports: %d %v", rec.Code, svc.calls)
	}
	rec = do(t, svc, alice, http.MethodPost, "/connections/c-lan/ports", "ports=10.0.0.0%2F33%3A80")
	if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "is not an IPv4 address or prefix such as 192.168.0.0/16") {
		t.Errorf("bad ports: %d", rec.Code)
	}
	if rec := do(t, svc, alice, http.MethodPost, "/connections/c-free/ports", "ports=80"); rec.Code != http.StatusBadRequest ||
		!strings.Contains(rec.Body.String(), "only mapping connections take a port list") {
		t.Errorf("ports of an internal connection: %d", rec.Code)
	}
	if rec := do(t, svc, alice, http.MethodPost, "/connections/c-free/rename", "name=backup-lan"); rec.Code != http.StatusSeeOther ||
		!svc.called("UpdateConnection c-free backup-lan") {
		t.Errorf("rename: %d %v", rec.Code, svc.calls)
	}

	if rec := do(t, svc, alice, http.MethodPost, "/connections/c-free/delete", ""); rec.Code != http.StatusBadRequest || svc.called("DeleteConnection") {
		t.Errorf("delete without ticking the box: %d", rec.Code)
	}
	if rec := do(t, svc, alice, http.MethodPost, "/connections/c-free/delete", "confirm=yes"); rec.Code != http.StatusSeeOther ||
		rec.Header().Get("Location") != "/connections?done=deleted" {
		t.Errorf("delete: %d %q", rec.Code, rec.Header().Get("Location"))
	}
	if rec := do(t, svc, alice, http.MethodPost, "/connections/c-bob/delete", "confirm=yes"); rec.Code != http.StatusNotFound {
		t.Errorf("alice deletes bob's connection: %d, want 404", rec.Code)
	}
}

func TestReadonlyViewerSeesNoForms(t *testing.T) {
	svc := newFake()
	for _, path := range []string{"/networks", "/connections"} {
		page := do(t, svc, reader, http.MethodGet, path, "").Body.String()
		// The shell's logout form is the only form a read-only viewer gets.
		if n := strings.Count(page, "<form"); n != 1 {
			t.Errorf("%s shows a read-only viewer %d forms, want only the logout form", path, n)
		}
		mustContain(t, path, page, "10.1.2.10")
	}
	rec := do(t, svc, reader, http.MethodPost, "/connections/c-lan/detach", "")
	if rec.Code != http.StatusForbidden || svc.called("DetachConnection") {
		t.Errorf("read-only detach: %d", rec.Code)
	}
}

func TestEveryFormCarriesTheCSRFToken(t *testing.T) {
	svc := newFake()
	for _, path := range []string{"/networks", "/connections"} {
		page := do(t, svc, root, http.MethodGet, path, "").Body.String()
		forms := regexp.MustCompile(`(?s)<form[^>]*method="post".*?</form>`).FindAllString(page, -1)
		if len(forms) < 5 {
			t.Fatalf("only %d forms on %s", len(forms), path)
		}
		for _, f := range forms {
			if !strings.Contains(f, `name="csrf" value="tok"`) {
				t.Errorf("%s: form without the CSRF token: %.200s", path, f)
			}
		}
	}
}
