package agent

import (
	"strings"
	"testing"
)

func TestParseCmdline(t *testing.T) {
	const fp = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	tests := []struct {
		name    string
		cmdline string
		want    Args
		wantErr []string // substrings of the error
	}{
		{
			name:    "compute with extra args",
			cmdline: "BOOT_IMAGE=/vmlinuz console=tty0 console=ttyS0,115200 cairn.role=compute cairn.admin=https://10.0.0.1 cairn.token=abc123 cairn.ca=" + fp + " quiet\n",
			want:    Args{Role: "compute", AdminURL: "https://10.0.0.1", Token: "abc123", CAFingerprint: fp},
		},
		{
			name:    "fingerprint without sha256: prefix",
			cmdline: `cairn.role="compute" cairn.admin="https://10.0.0.1:8443/" "cairn.token=a b" cairn.ca=` + strings.ToUpper(fp[7:]) + ` foo="x y"`,
			wantErr: []string{"cairn.ca"},
		},
		{
			name:    "quoted values and upper-case fingerprint",
			cmdline: `cairn.role="compute" cairn.admin="https://10.0.0.1:8443/" "cairn.token=a b" cairn.ca="SHA256:` + strings.ToUpper(fp[7:]) + `" foo="x y"`,
			want:    Args{Role: "compute", AdminURL: "https://10.0.0.1:8443", Token: "a b", CAFingerprint: fp},
		},
		{
			name:    "admin needs only the role",
			cmdline: "console=ttyS0 cairn.role=admin",
			want:    Args{Role: "admin"},
		},
		{
			name:    "last one wins",
			cmdline: "cairn.role=admin cairn.role=compute cairn.admin=https://a cairn.token=t cairn.ca=" + fp,
			want:    Args{Role: "compute", AdminURL: "https://a", Token: "t", CAFingerprint: fp},
		},
		{
			name:    "missing token",
			cmdline: "cairn.role=compute cairn.admin=https://10.0.0.1 cairn.ca=" + fp,
			wantErr: []string{"cairn.token"},
		},
		{
			name:    "empty token",
			cmdline: "cairn.role=compute cairn.admin=https://10.0.0.1 cairn.token= cairn.ca=" + fp,
			wantErr: []string{"cairn.token"},
		},
		{
			name:    "missing several",
			cmdline: "cairn.role=compute",
			wantErr: []string{"cairn.admin", "cairn.token", "cairn.ca"},
		},
		{
			name:    "missing role",
			cmdline: "console=ttyS0 cairn.token=x",
			wantErr: []string{"cairn.role"},
		},
		{
			name:    "unknown role",
			cmdline: "cairn.role=storage",
			wantErr: []string{"cairn.role", "storage"},
		},
		{
			name:    "admin url not https",
			cmdline: "cairn.role=compute cairn.admin=http://10.0.0.1 cairn.token=t cairn.ca=" + fp,
			wantErr: []string{"cairn.admin", "https"},
		},
		{
			name:    "short fingerprint",
			cmdline: "cairn.role=compute cairn.admin=https://10.0.0.1 cairn.token=t cairn.ca=sha256:abcd",
			wantErr: []string{"cairn.ca", "64 hex digits"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseCmdline(tt.cmdline)
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("ParseCmdline = %+v, want an error naming %v", got, tt.wantErr)
				}
				for _, s := range tt.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not name %q", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseCmdline: %v", err)
			}
			if got != tt.want {
				t.Errorf("ParseCmdline = %+v, want %+v", got, tt.want)
			}
		})
	}
}
