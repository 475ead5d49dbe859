package sdnctl

import (
	"fmt"
	"sync"

	"github.com/spf13/pflag"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/ovs-sdn/ovs-sdn/pkg/client/clientset/versioned"
)

// Clients are the API clients a command uses. Tests inject fakes through Options.Clients;
// otherwise they are built from the kubeconfig on first use.
type Clients struct {
	Kube    kubernetes.Interface
	Network versioned.Interface
	Dynamic dynamic.Interface
}

// Factory resolves kubeconfig, namespace and clients for the subcommands, following kubectl:
// --kubeconfig, else $KUBECONFIG (a list of files, merged), else ~/.kube/config; --context
// picks a context; the namespace is -n, else the context's, else "default".
type Factory struct {
	kubeconfig string
	context    string
	namespace  string

	injected *Clients

	once    sync.Once
	clients *Clients
	err     error
}

func newFactory(injected *Clients) *Factory {
	return &Factory{injected: injected}
}

// addFlags registers the connection flags as persistent flags of the root command.
func (f *Factory) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "Path to the kubeconfig file to use for CLI requests.")
	fs.StringVar(&f.context, "context", "", "The name of the kubeconfig context to use")
	fs.StringVarP(&f.namespace, "namespace", "n", "", "If present, the namespace scope for this CLI request")
}

func (f *Factory) clientConfig() clientcmd.ClientConfig {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = f.kubeconfig
	overrides := &clientcmd.ConfigOverrides{CurrentContext: f.context}
	return clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides)
}

// RESTConfig is the client configuration of the selected kubeconfig context.
func (f *Factory) RESTConfig() (*rest.Config, error) {
	cfg, err := f.clientConfig().ClientConfig()
	if err != nil {
		return nil, err
	}
	cfg.UserAgent = "sdnctl"
	return cfg, nil
}

// Namespace is the namespace a namespaced request targets.
func (f *Factory) Namespace() (string, error) {
	if f.namespace != "" {
		return f.namespace, nil
	}
	if f.injected != nil {
		return "default", nil
	}
	ns, _, err := f.clientConfig().Namespace()
	if err != nil {
		return "", err
	}
	return ns, nil
}

// Clients returns the API clients, building them once.
func (f *Factory) Clients() (*Clients, error) {
	if f.injected != nil {
		return f.injected, nil
	}
	f.once.Do(func() { f.clients, f.err = f.buildClients() })
	return f.clients, f.err
}

func (f *Factory) buildClients() (*Clients, error) {
	cfg, err := f.RESTConfig()
	if err != nil {
		return nil, err
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating Kubernetes client: %w", err)
	}
	network, err := versioned.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating network.openshift.io client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating dynamic client: %w", err)
	}
	return &Clients{Kube: kube, Network: network, Dynamic: dyn}, nil
}
