// Command sdnctl is the ovs-sdn operator CLI; see package sdnctl.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/ovs-sdn/ovs-sdn/pkg/sdnctl"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := sdnctl.Main(ctx, os.Args[1:], sdnctl.Options{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr})
	stop()
	os.Exit(code)
}
