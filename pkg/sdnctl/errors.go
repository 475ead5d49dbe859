package sdnctl

import (
	"fmt"
	"net/url"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/client-go/tools/clientcmd"
)

// Exit codes. Like kubectl, every failure — bad usage, a refused request, an object not
// found, a timeout — exits 1; scripts distinguish cases by the message on stderr.
const (
	ExitOK      = 0
	ExitFailure = 1
)

// usageError marks a command-line mistake; its message is followed by a pointer to -h.
type usageError struct {
	msg         string
	commandPath string
}

func (e *usageError) Error() string {
	return fmt.Sprintf("%s\nSee '%s -h' for help and examples", e.msg, e.commandPath)
}

func usageErrorf(commandPath, format string, args ...interface{}) error {
	return &usageError{msg: fmt.Sprintf(format, args...), commandPath: commandPath}
}

// errorMessage renders err for stderr the way kubectl's CheckErr does: API errors as
// "Error from server (Reason): …", a single other error as "error: …", several errors one
// per line.
func errorMessage(err error) string {
	if agg, ok := err.(utilerrors.Aggregate); ok {
		errs := agg.Errors()
		if len(errs) == 1 {
			return errorMessage(errs[0])
		}
		// Several errors: one per line, API errors formatted, others bare (as kubectl).
		lines := make([]string, 0, len(errs))
		for _, e := range errs {
			msg, ok := apiErrorMessage(e)
			if !ok {
				msg = e.Error()
			}
			lines = append(lines, msg)
		}
		return strings.Join(lines, "\n")
	}
	if msg, ok := apiErrorMessage(err); ok {
		return msg
	}
	if clientcmd.IsConfigurationInvalid(err) {
		return "Error in configuration: " + err.Error()
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "error: ") {
		msg = "error: " + msg
	}
	return msg
}

// apiErrorMessage formats errors returned by the API server or the transport.
func apiErrorMessage(err error) (string, bool) {
	// Only an unwrapped API error is shown as the server's: a wrapped one carries our context.
	if status, ok := err.(apierrors.APIStatus); ok {
		s := status.Status()
		switch {
		case s.Reason == metav1.StatusReasonUnauthorized:
			return fmt.Sprintf("error: You must be logged in to the server (%s)", s.Message), true
		case s.Reason != "":
			return fmt.Sprintf("Error from server (%s): %s", s.Reason, s.Message), true
		default:
			return fmt.Sprintf("Error from server: %s", s.Message), true
		}
	}
	if uerr, ok := err.(*url.Error); ok {
		if strings.Contains(uerr.Err.Error(), "connection refused") {
			host := uerr.URL
			if u, perr := url.Parse(uerr.URL); perr == nil {
				host = u.Host
			}
			return fmt.Sprintf("The connection to the server %s was refused - did you specify the right host or port?", host), true
		}
		return fmt.Sprintf("Unable to connect to the server: %v", uerr.Err), true
	}
	return "", false
}
