package main

import (
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	"github.com/zonenet/zonenet/pki"
)

const certsUsage = `Usage: zonenetctl certs ca --dir DIR [--name CN] [--days N] [--force]
       zonenetctl certs node --dir DIR --name NAME [--ip ADDR]... [--dns HOST]... [--days N] [--force]

Makes the TLS material of a cluster: an authority (ca.crt, ca.key) and, signed
by it, one certificate per node or client (NAME.crt, NAME.key), all PEM in
DIR. Keys are ECDSA P-256, written with mode 0600; the directory is created
with mode 0700. A node certificate serves both ends of a mutually
authenticated TLS 1.3 connection (etcd, peers, control API).
`

const certsCASynopsis = `certs ca --dir DIR [--name CN] [--days N] [--force]

Creates a new certificate authority as DIR/ca.crt and DIR/ca.key. Refuses to
replace an existing one unless --force: every certificate it signed would
stop being trusted. Keep ca.key off the nodes; nodes need only ca.crt.`

const certsNodeSynopsis = `certs node --dir DIR --name NAME [--ip ADDR]... [--dns HOST]... [--days N] [--force]

Signs a new key for NAME with the authority in DIR and writes DIR/NAME.crt
and DIR/NAME.key. The certificate carries every --ip and --dns as a subject
alternative name: a server's certificate must name each address and host
name its clients dial. NAME is 1-64 letters, digits, '.', '-' or '_'.`

func runCerts(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, certsUsage)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, certsUsage)
		return exitOK
	case "ca":
		return runCertsCA(args[1:], stdout, stderr)
	case "node":
		return runCertsNode(args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "zonenetctl certs: unknown command %q\n\n%s", args[0], certsUsage)
	return exitUsage
}

func runCertsCA(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("certs ca", certsCASynopsis)
	dir := fs.String("dir", "", "directory of the material (required)")
	name := fs.String("name", "zonenet CA", "common name of the authority")
	days := fs.Int("days", int(pki.DefaultCAValidity/(24*time.Hour)), "validity in days")
	force := fs.Bool("force", false, "replace an existing authority")
	if code, ok := parse(fs, args, stdout, stderr); !ok {
		return code
	}
	if code, ok := requireDirDays(fs.Name(), *dir, *days, stderr); !ok {
		return code
	}
	ca, err := pki.NewCA(pki.CASpec{Name: *name, Validity: time.Duration(*days) * 24 * time.Hour})
	if err == nil {
		err = ca.Write(*dir, *force)
	}
	if err != nil {
		fmt.Fprintf(stderr, "zonenetctl certs ca: %v\n", err)
		return exitFailed
	}
	fmt.Fprintf(stdout, "wrote %s and %s (valid until %s)\n",
		pki.CACertPath(*dir), pki.CAKeyPath(*dir), ca.Cert.NotAfter.UTC().Format(time.RFC3339))
	return exitOK
}

func runCertsNode(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("certs node", certsNodeSynopsis)
	dir := fs.String("dir", "", "directory holding ca.crt and ca.key, where the certificate is written (required)")
	name := fs.String("name", "", "node or client name: common name and file name (required)")
	var ips addrList
	var hosts stringList
	fs.Var(&ips, "ip", "IP address the certificate is valid for (repeatable)")
	fs.Var(&hosts, "dns", "DNS name the certificate is valid for (repeatable)")
	days := fs.Int("days", int(pki.DefaultCertValidity/(24*time.Hour)), "validity in days")
	force := fs.Bool("force", false, "replace an existing certificate and key of NAME")
	if code, ok := parse(fs, args, stdout, stderr); !ok {
		return code
	}
	if code, ok := requireDirDays(fs.Name(), *dir, *days, stderr); !ok {
		return code
	}
	if err := pki.CheckName(*name); err != nil {
		fmt.Fprintf(stderr, "%s: --name: %v\n", fs.Name(), err)
		return exitUsage
	}
	ca, err := pki.LoadCA(*dir)
	if err != nil {
		fmt.Fprintf(stderr, "zonenetctl certs node: %v (create one with: zonenetctl certs ca --dir %s)\n", err, *dir)
		return exitFailed
	}
	p, err := ca.Issue(pki.CertSpec{Name: *name, IPs: ips, DNS: hosts, Validity: time.Duration(*days) * 24 * time.Hour})
	if err == nil {
		err = p.Write(*dir, *name, *force)
	}
	if err != nil {
		fmt.Fprintf(stderr, "zonenetctl certs node: %v\n", err)
		return exitFailed
	}
	fmt.Fprintf(stdout, "wrote %s and %s (valid until %s)\n",
		pki.CertPath(*dir, *name), pki.KeyPath(*dir, *name), p.Cert.NotAfter.UTC().Format(time.RFC3339))
	return exitOK
}

func requireDirDays(cmd, dir string, days int, stderr io.Writer) (int, bool) {
	switch {
	case dir == "":
		fmt.Fprintf(stderr, "%s: --dir is required\n", cmd)
	case days < 1:
		fmt.Fprintf(stderr, "%s: --days must be at least 1, not %d\n", cmd, days)
	default:
		return 0, true
	}
	return exitUsage, false
}

// addrList is a repeatable IP address flag.
type addrList []netip.Addr

func (l *addrList) String() string {
	if l == nil {
		return ""
	}
	s := make([]string, len(*l))
	for i, a := range *l {
		s[i] = a.String()
	}
	return strings.Join(s, ",")
}

func (l *addrList) Set(v string) error {
	a, err := netip.ParseAddr(v)
	if err != nil || a.Zone() != "" {
		return fmt.Errorf("%q is not an IP address", v)
	}
	*l = append(*l, a)
	return nil
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string {
	if l == nil {
		return ""
	}
	return strings.Join(*l, ",")
}

func (l *stringList) Set(v string) error {
	*l = append(*l, v)
	return nil
}
