package pki

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

// Files names the material one end of a connection presents and trusts.
type Files struct {
	CA   string // PEM bundle of the trusted authorities
	Cert string // own certificate
	Key  string // own key
}

// DirFiles are the files of name in a directory written by this package.
func DirFiles(dir, name string) Files {
	return Files{CA: CACertPath(dir), Cert: CertPath(dir, name), Key: KeyPath(dir, name)}
}

// ClientConfig is the TLS configuration of a client: it presents its
// certificate and trusts only servers signed by f.CA.
func (f Files) ClientConfig() (*tls.Config, error) {
	pool, pair, err := f.load()
	if err != nil {
		return nil, fmt.Errorf("client TLS: %w", err)
	}
	return ClientTLS(pool, pair), nil
}

// ServerConfig is the TLS configuration of a server: it refuses every client
// without a certificate signed by f.CA.
func (f Files) ServerConfig() (*tls.Config, error) {
	pool, pair, err := f.load()
	if err != nil {
		return nil, fmt.Errorf("server TLS: %w", err)
	}
	return ServerTLS(pool, pair), nil
}

func (f Files) load() (*x509.CertPool, *Pair, error) {
	data, err := os.ReadFile(f.CA)
	if err != nil {
		return nil, nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, nil, fmt.Errorf("%s: no PEM certificate", f.CA)
	}
	pair, err := LoadPair(f.Cert, f.Key)
	if err != nil {
		return nil, nil, err
	}
	return pool, pair, nil
}

// ClientTLS presents pair and trusts servers signed by an authority of
// roots. The server name to verify comes from the address dialled.
func ClientTLS(roots *x509.CertPool, pair *Pair) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		RootCAs:      roots,
		Certificates: []tls.Certificate{pair.TLSCertificate()},
	}
}

// ServerTLS presents pair and requires a client certificate signed by an
// authority of clientCAs: mutual TLS, TLS 1.3 only.
func ServerTLS(clientCAs *x509.CertPool, pair *Pair) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    clientCAs,
		Certificates: []tls.Certificate{pair.TLSCertificate()},
	}
}

// TLSCertificate is the pair in the form crypto/tls presents.
func (p *Pair) TLSCertificate() tls.Certificate {
	return tls.Certificate{Certificate: [][]byte{p.Cert.Raw}, PrivateKey: p.Key, Leaf: p.Cert}
}
