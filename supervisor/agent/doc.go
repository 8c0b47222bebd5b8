// Package agent is the compute node's side of Cairn: it reads the cairn.* kernel
// arguments, joins the admin with the join token (checking the admin by the CA
// fingerprint, never by system roots), beats every few seconds over mutual TLS with the
// certificate the admin signed, and serves the node's libvirt socket to the admin over
// mutual TLS on port 16514. It also holds the admin's side of that channel: the dialer
// that runs go-libvirt over it.
//
// The libvirt listener speaks libvirt's own TLS transport: after the handshake and the
// check of the client certificate it writes the single byte 1 that libvirtd writes, then
// pipes the connection to the local unix socket. So a plain qemu+tls:// client works
// against it as well as DialLibvirt.
package agent
