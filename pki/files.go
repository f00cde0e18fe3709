package pki

import (
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// caName is the base name of the authority's files in a directory.
const caName = "ca"

// CertPath and KeyPath are where a directory of material keeps name's
// certificate and key.
func CertPath(dir, name string) string { return filepath.Join(dir, name+".crt") }
func KeyPath(dir, name string) string  { return filepath.Join(dir, name+".key") }

// CACertPath and CAKeyPath are the authority's files in dir.
func CACertPath(dir string) string { return CertPath(dir, caName) }
func CAKeyPath(dir string) string  { return KeyPath(dir, caName) }

func encodeCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// Write stores the authority as ca.crt and ca.key in dir (created 0700 if
// missing). Existing files are an error (fs.ErrExist) unless overwrite.
func (ca *CA) Write(dir string, overwrite bool) error {
	return ca.Pair.write(dir, caName, overwrite)
}

// Write stores the pair as <name>.crt and <name>.key in dir.
func (p *Pair) Write(dir, name string, overwrite bool) error {
	if err := CheckName(name); err != nil {
		return fmt.Errorf("write certificate: %w", err)
	}
	return p.write(dir, name, overwrite)
}

func (p *Pair) write(dir, name string, overwrite bool) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	cert, key := CertPath(dir, name), KeyPath(dir, name)
	if !overwrite {
		// Checked for both files first, so a refusal leaves nothing behind.
		for _, f := range []string{cert, key} {
			if _, err := os.Lstat(f); err == nil {
				return fmt.Errorf("write %s: %s already exists: %w", name, f, fs.ErrExist)
			}
		}
	}
	// The key goes first: a certificate on disk promises its key is there.
	if err := writeFile(key, p.KeyPEM, 0o600, overwrite); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := writeFile(cert, p.CertPEM, 0o644, overwrite); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}

// writeFile writes data to a temporary file with mode perm from the start
// (a key is never readable by others, not even briefly), fsyncs it and
// moves it into place: renamed over an old file if overwrite, else linked,
// which fails if path appeared meanwhile.
func writeFile(path string, data []byte, perm os.FileMode, overwrite bool) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = os.Remove(tmp)
		}
	}()
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if overwrite {
		if err := os.Rename(tmp, path); err != nil {
			return err
		}
	} else {
		if err := os.Link(tmp, path); err != nil {
			return err
		}
		_ = os.Remove(tmp)
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// LoadCA reads the authority written by (*CA).Write in dir.
func LoadCA(dir string) (*CA, error) {
	p, err := LoadPair(CACertPath(dir), CAKeyPath(dir))
	if err != nil {
		return nil, fmt.Errorf("load CA: %w", err)
	}
	if !p.Cert.IsCA {
		return nil, fmt.Errorf("load CA: %s is not a CA certificate", CACertPath(dir))
	}
	return &CA{*p}, nil
}

// LoadPair reads a PEM certificate and its PEM ECDSA key, and checks that
// they belong together.
func LoadPair(certFile, keyFile string) (*Pair, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, err
	}
	cert, err := parseCert(certFile, certPEM)
	if err != nil {
		return nil, err
	}
	key, err := parseKey(keyFile, keyPEM)
	if err != nil {
		return nil, err
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("%s is not the key of %s", keyFile, certFile)
	}
	return &Pair{Cert: cert, Key: key, CertPEM: certPEM, KeyPEM: keyPEM}, nil
}

func parseCert(file string, data []byte) (*x509.Certificate, error) {
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s: no PEM CERTIFICATE block", file)
	}
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return cert, nil
}

func parseKey(file string, data []byte) (*ecdsa.PrivateKey, error) {
	b, _ := pem.Decode(data)
	if b == nil {
		return nil, fmt.Errorf("%s: no PEM block", file)
	}
	var (
		key any
		err error
	)
	switch b.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(b.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(b.Bytes)
	default:
		return nil, fmt.Errorf("%s: PEM block %q is not a private key", file, b.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	ec, ok := key.(*ecdsa.PrivateKey)
	if !ok {
		return nil, errors.New(file + ": not an ECDSA key")
	}
	return ec, nil
}
