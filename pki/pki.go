// Package pki makes the TLS material of a zonenet cluster: a small
// certificate authority, node certificates signed by it, and the
// *tls.Config of both ends of a mutually authenticated connection.
//
// Keys are ECDSA P-256: small, fast to make on a node, and accepted by every
// TLS stack we talk to (etcd 3.4 included). A node certificate is good for
// both ends of a connection (server and client authentication) because a
// node is both: it serves its peer and control APIs and it is a client of
// etcd and of its peers. Every connection is TLS 1.3 with a certificate on
// both sides.
//
// # Files
//
// One directory holds the material, PEM-encoded:
//
//	ca.crt  ca.key          the authority (the key stays on the operator's machine)
//	<name>.crt <name>.key   one node or client
//
// Keys are written with mode 0600, certificates with 0644, each file through
// a temporary file, fsync and rename, so a crash never leaves half a key.
package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"strings"
	"time"
)

// Validity defaults: an authority outlives the nodes it signs.
const (
	DefaultCAValidity   = 10 * 365 * 24 * time.Hour
	DefaultCertValidity = 365 * 24 * time.Hour
	// backdate covers clocks of other nodes that run a little behind.
	backdate = 5 * time.Minute
)

// Pair is a certificate and its private key.
type Pair struct {
	Cert    *x509.Certificate
	Key     *ecdsa.PrivateKey
	CertPEM []byte
	KeyPEM  []byte
}

// CA is the authority that signs the certificates of a cluster.
type CA struct{ Pair }

// CASpec describes a new authority.
type CASpec struct {
	Name     string        // common name; "zonenet CA" if empty
	Validity time.Duration // DefaultCAValidity if zero
	Now      time.Time     // time.Now() if zero
}

// NewCA makes a self-signed authority that may sign end-entity certificates
// only (path length 0): a leaked node key cannot mint further authorities.
func NewCA(spec CASpec) (*CA, error) {
	if spec.Name == "" {
		spec.Name = "zonenet CA"
	}
	if spec.Validity == 0 {
		spec.Validity = DefaultCAValidity
	}
	if spec.Validity < 0 {
		return nil, fmt.Errorf("new CA %q: negative validity %s", spec.Name, spec.Validity)
	}
	if spec.Now.IsZero() {
		spec.Now = time.Now()
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("new CA %q: generate key: %w", spec.Name, err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, fmt.Errorf("new CA %q: %w", spec.Name, err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: spec.Name, Organization: []string{"zonenet"}},
		NotBefore:             spec.Now.Add(-backdate),
		NotAfter:              spec.Now.Add(spec.Validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("new CA %q: sign: %w", spec.Name, err)
	}
	p, err := newPair(der, key)
	if err != nil {
		return nil, fmt.Errorf("new CA %q: %w", spec.Name, err)
	}
	return &CA{*p}, nil
}

// CertSpec describes a node or client certificate.
type CertSpec struct {
	Name     string       // common name, and the file name in a directory
	IPs      []netip.Addr // IP subject alternative names
	DNS      []string     // DNS subject alternative names
	Validity time.Duration
	Now      time.Time
}

// Issue signs a new key for spec.Name, usable as a server and as a client.
// A server needs a SAN for each address or name its clients dial; a
// certificate without any is still a valid client certificate.
func (ca *CA) Issue(spec CertSpec) (*Pair, error) {
	if err := CheckName(spec.Name); err != nil {
		return nil, fmt.Errorf("issue certificate: %w", err)
	}
	if spec.Validity == 0 {
		spec.Validity = DefaultCertValidity
	}
	if spec.Validity < 0 {
		return nil, fmt.Errorf("issue certificate %q: negative validity %s", spec.Name, spec.Validity)
	}
	if spec.Now.IsZero() {
		spec.Now = time.Now()
	}
	notAfter := spec.Now.Add(spec.Validity)
	if notAfter.After(ca.Cert.NotAfter) {
		// A certificate cannot outlive its issuer's trust anyway; say so
		// now rather than at the first failed handshake.
		return nil, fmt.Errorf("issue certificate %q: would expire %s, after the CA (%s)",
			spec.Name, notAfter.Format(time.RFC3339), ca.Cert.NotAfter.Format(time.RFC3339))
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: spec.Name, Organization: []string{"zonenet"}},
		NotBefore:   spec.Now.Add(-backdate),
		NotAfter:    notAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, ip := range spec.IPs {
		if !ip.IsValid() {
			return nil, fmt.Errorf("issue certificate %q: invalid IP address", spec.Name)
		}
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.IP(ip.Unmap().AsSlice()))
	}
	for _, h := range spec.DNS {
		if err := checkDNSName(h); err != nil {
			return nil, fmt.Errorf("issue certificate %q: %w", spec.Name, err)
		}
		tmpl.DNSNames = append(tmpl.DNSNames, strings.ToLower(h))
	}
	var err error
	if tmpl.SerialNumber, err = newSerial(); err != nil {
		return nil, fmt.Errorf("issue certificate %q: %w", spec.Name, err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("issue certificate %q: generate key: %w", spec.Name, err)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, fmt.Errorf("issue certificate %q: sign: %w", spec.Name, err)
	}
	p, err := newPair(der, key)
	if err != nil {
		return nil, fmt.Errorf("issue certificate %q: %w", spec.Name, err)
	}
	return p, nil
}

// Pool is a pool holding only this authority.
func (ca *CA) Pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	return pool
}

func newPair(der []byte, key *ecdsa.PrivateKey) (*Pair, error) {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse the certificate just made: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, err
	}
	return &Pair{Cert: cert, Key: key, CertPEM: encodeCert(der), KeyPEM: keyPEM}, nil
}

// newSerial is a random 128-bit serial: unique without keeping a counter
// next to the authority's key.
func newSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

// CheckName accepts a certificate name that is also a safe file name in a
// directory of material: 1-64 letters, digits, '.', '-' or '_', not
// starting with '.' or '-', and not "ca" (the authority's files).
func CheckName(name string) error {
	if name == "" || len(name) > 64 || name[0] == '.' || name[0] == '-' {
		return fmt.Errorf("name %q: must be 1-64 letters, digits, '.', '-' or '_', not starting with '.' or '-'", name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return fmt.Errorf("name %q: character %q is not allowed (letters, digits, '.', '-', '_')", name, c)
		}
	}
	if strings.EqualFold(name, "ca") {
		return errors.New(`name "ca" is the authority's own`)
	}
	return nil
}

// checkDNSName accepts a host name, optionally with a leading "*." label.
func checkDNSName(h string) error {
	name := strings.TrimPrefix(h, "*.")
	if name == "" || len(h) > 253 {
		return fmt.Errorf("DNS name %q: empty or longer than 253 characters", h)
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("DNS name %q: label %q must be 1-63 characters, not starting or ending with '-'", h, label)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("DNS name %q: character %q is not allowed", h, c)
			}
		}
	}
	return nil
}
