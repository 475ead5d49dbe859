package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
)

// servingDNSNames are the names the kubernetes Service gives the API server.
var servingDNSNames = []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
	"kubernetes.default.svc.cluster.local"}

// servingCertArgs returns no flags when extra is empty (kube-apiserver then signs its own
// certificate for 127.0.0.1). Otherwise it issues a serving certificate valid for
// 127.0.0.1, the kubernetes Service's ClusterIP and extra from a new CA, writes the chain
// (certificate, then CA) where kube-apiserver would have written its own — so the rest of
// the Env trusts it the same way — and returns the flags that make kube-apiserver use it.
func (e *Env) servingCertArgs(extra []netip.Addr) ([]string, error) {
	if len(extra) == 0 {
		return nil, nil
	}
	svcIP, err := firstServiceIP(ServiceClusterIPRange)
	if err != nil {
		return nil, err
	}
	ips := []net.IP{net.IPv4(127, 0, 0, 1), svcIP}
	for _, a := range extra {
		ips = append(ips, net.IP(a.AsSlice()))
	}
	chain, keyPEM, err := issueServingCert(ips)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(e.Dir, apiserverCertDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	certPath, keyPath := filepath.Join(dir, "apiserver.crt"), filepath.Join(dir, "apiserver.key")
	if err := os.WriteFile(keyPath, keyPEM, 0o600); err != nil {
		return nil, fmt.Errorf("writing serving key: %w", err)
	}
	if err := os.WriteFile(certPath, chain, 0o644); err != nil {
		return nil, fmt.Errorf("writing serving certificate: %w", err)
	}
	return []string{"--tls-cert-file=" + certPath, "--tls-private-key-file=" + keyPath}, nil
}

// issueServingCert returns a PEM chain (serving certificate, its CA) and the PEM key.
func issueServingCert(ips []net.IP) (chain, keyPEM []byte, err error) {
	ca, err := newCA("ovs-sdn-testenv-serving-ca")
	if err != nil {
		return nil, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generating serving key: %w", err)
	}
	tmpl, err := certTemplate(pkix.Name{CommonName: "kube-apiserver"})
	if err != nil {
		return nil, nil, err
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	tmpl.IPAddresses, tmpl.DNSNames = ips, servingDNSNames
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return nil, nil, fmt.Errorf("signing serving certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return append(pemBlock("CERTIFICATE", der), ca.certPEM...), pemBlock("PRIVATE KEY", keyDER), nil
}

// firstServiceIP is the kubernetes Service's ClusterIP: the first address of the range.
func firstServiceIP(cidr string) (net.IP, error) {
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return nil, fmt.Errorf("service range %q: %w", cidr, err)
	}
	return net.IP(p.Masked().Addr().Next().AsSlice()), nil
}

// ClientCAPEM is the CA the API server trusts for client certificates (and that signs
// every identity ConfigFor mints), for components that authenticate the same clients,
// such as a kubelet's x509 client CA.
func (e *Env) ClientCAPEM() []byte { return e.ca.certPEM }
