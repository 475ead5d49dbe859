package testenv

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/client-go/rest"
)

// Files and directories inside Env.Dir.
const (
	etcdDataDir        = "etcd"
	apiserverCertDir   = "apiserver-certs" // kube-apiserver writes its self-signed pair here
	kcmCertDir         = "kube-controller-manager-certs"
	clientCAFile       = "client-ca.crt"
	saKeyFile          = "service-account.key"
	saPubFile          = "service-account.pub"
	adminKubeconfig    = "admin.kubeconfig"
	serviceAccountIss  = "https://kubernetes.default.svc.cluster.local"
	checkRequestBudget = 2 * time.Second
)

// startEtcd runs a single-member etcd on two free loopback ports and returns its client URL
// once /health reports healthy.
func (e *Env) startEtcd(ctx context.Context, bin string) (string, error) {
	ports, err := freePorts(2)
	if err != nil {
		return "", err
	}
	client := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	peer := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	args := []string{
		"--name=testenv",
		"--data-dir=" + filepath.Join(e.Dir, etcdDataDir),
		"--listen-client-urls=" + client,
		"--advertise-client-urls=" + client,
		"--listen-peer-urls=" + peer,
		"--initial-advertise-peer-urls=" + peer,
		"--initial-cluster=testenv=" + peer,
		// Throw-away data: durability buys nothing and fsync dominates on slow disks.
		"--unsafe-no-fsync=true",
	}
	p, err := e.spawner.startProcess("etcd", bin, args, filepath.Join(e.Dir, "etcd.log"))
	if err != nil {
		return "", err
	}
	e.addProcess(p)
	httpc := &http.Client{Timeout: checkRequestBudget}
	err = waitReady(ctx, p, "etcd", func(ctx context.Context) error {
		return httpCheck(ctx, httpc, client+"/health", `"health":"true"`)
	})
	return client, err
}

// startAPIServer runs kube-apiserver against etcdURL, then fills URL, Config and Kubeconfig
// and waits for /readyz and /livez.
func (e *Env) startAPIServer(ctx context.Context, bin, etcdURL string, opts Options) error {
	args, err := e.apiserverArgs(etcdURL, opts)
	if err != nil {
		return err
	}
	p, err := e.spawner.startProcess("kube-apiserver", bin, args, filepath.Join(e.Dir, "kube-apiserver.log"))
	if err != nil {
		return err
	}
	e.addProcess(p)
	e.apiserver = p
	certPath := filepath.Join(e.Dir, apiserverCertDir, "apiserver.crt")
	e.servingCA, err = waitServingCert(ctx, p, "kube-apiserver", certPath)
	if err != nil {
		return err
	}
	certPEM, keyPEM, err := e.ca.issue(AdminUser, []string{"system:masters"})
	if err != nil {
		return err
	}
	e.Config = e.restConfig(certPEM, keyPEM)
	e.Kubeconfig = filepath.Join(e.Dir, adminKubeconfig)
	if err := writeKubeconfig(e.Kubeconfig, e.Config, AdminUser); err != nil {
		return err
	}
	httpc, err := checkClient(e.Config)
	if err != nil {
		return err
	}
	return waitReady(ctx, p, "kube-apiserver", func(ctx context.Context) error {
		if err := httpCheck(ctx, httpc, e.URL+"/readyz", "ok"); err != nil {
			return err
		}
		return httpCheck(ctx, httpc, e.URL+"/livez", "ok")
	})
}

// apiserverArgs writes the client CA and service-account key, picks the secure port, sets
// e.URL and returns kube-apiserver's command line.
func (e *Env) apiserverArgs(etcdURL string, opts Options) ([]string, error) {
	ports, err := freePorts(1)
	if err != nil {
		return nil, err
	}
	e.URL = fmt.Sprintf("https://127.0.0.1:%d", ports[0])
	tlsArgs, err := e.servingCertArgs(opts.ServingIPs)
	if err != nil {
		return nil, err
	}
	caPath := filepath.Join(e.Dir, clientCAFile)
	if err := os.WriteFile(caPath, e.ca.certPEM, 0o644); err != nil {
		return nil, fmt.Errorf("writing client CA: %w", err)
	}
	saKey, saPub := filepath.Join(e.Dir, saKeyFile), filepath.Join(e.Dir, saPubFile)
	if err := writeServiceAccountKey(saKey, saPub); err != nil {
		return nil, err
	}
	args := []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", ports[0]),
		"--cert-dir=" + filepath.Join(e.Dir, apiserverCertDir),
		"--client-ca-file=" + caPath,
		"--authorization-mode=Node,RBAC",
		"--service-cluster-ip-range=" + ServiceClusterIPRange,
		"--service-account-issuer=" + serviceAccountIss,
		"--service-account-key-file=" + saPub,
		"--service-account-signing-key-file=" + saKey,
		"--allow-privileged=true",
	}
	args = append(args, tlsArgs...)
	if !opts.ControllerManager {
		// Nothing would create the "default" ServiceAccount the plugin requires of pods.
		args = append(args, "--disable-admission-plugins=ServiceAccount")
	}
	return append(args, opts.ExtraAPIServerArgs...), nil
}

// startControllerManager runs kube-controller-manager with the admin kubeconfig and waits
// for its /healthz.
func (e *Env) startControllerManager(ctx context.Context, bin string) error {
	ports, err := freePorts(1)
	if err != nil {
		return err
	}
	args := []string{
		"--kubeconfig=" + e.Kubeconfig,
		"--authentication-kubeconfig=" + e.Kubeconfig,
		"--authorization-kubeconfig=" + e.Kubeconfig,
		"--bind-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", ports[0]),
		"--cert-dir=" + filepath.Join(e.Dir, kcmCertDir),
		"--leader-elect=false",
		"--service-account-private-key-file=" + filepath.Join(e.Dir, saKeyFile),
		"--root-ca-file=" + filepath.Join(e.Dir, apiserverCertDir, "apiserver.crt"),
		"--service-cluster-ip-range=" + ServiceClusterIPRange,
	}
	p, err := e.spawner.startProcess("kube-controller-manager", bin, args, filepath.Join(e.Dir, "kube-controller-manager.log"))
	if err != nil {
		return err
	}
	e.addProcess(p)
	certPath := filepath.Join(e.Dir, kcmCertDir, "kube-controller-manager.crt")
	ca, err := waitServingCert(ctx, p, "kube-controller-manager", certPath)
	if err != nil {
		return err
	}
	httpc, err := checkClient(&rest.Config{TLSClientConfig: rest.TLSClientConfig{CAData: ca}})
	if err != nil {
		return err
	}
	url := fmt.Sprintf("https://127.0.0.1:%d/healthz", ports[0])
	return waitReady(ctx, p, "kube-controller-manager", func(ctx context.Context) error {
		return httpCheck(ctx, httpc, url, "ok")
	})
}

// waitServingCert waits until the self-signed serving certificate chain a component writes
// at start-up is complete and returns it as PEM, to be trusted as CA.
func waitServingCert(ctx context.Context, p *process, name, path string) ([]byte, error) {
	var pemData []byte
	err := waitReady(ctx, p, name+" serving certificate "+path, func(context.Context) error {
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if !x509.NewCertPool().AppendCertsFromPEM(b) {
			return fmt.Errorf("%s holds no complete certificate yet", path)
		}
		pemData = b
		return nil
	})
	return pemData, err
}

// checkClient is an HTTP client for readiness probes, trusting what cfg trusts.
func checkClient(cfg *rest.Config) (*http.Client, error) {
	tlsCfg, err := rest.TLSConfigFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("building TLS configuration: %w", err)
	}
	if tlsCfg == nil {
		tlsCfg = &tls.Config{}
	}
	return &http.Client{
		Timeout:   checkRequestBudget,
		Transport: &http.Transport{TLSClientConfig: tlsCfg, DisableKeepAlives: true},
	}, nil
}

// httpCheck GETs url and succeeds on 200 with a body containing want.
func httpCheck(ctx context.Context, c *http.Client, url, want string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}
