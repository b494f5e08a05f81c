// Command consul is coromesh's own thin entry point for the real HashiCorp
// Consul agent (v1.15.4, MPL-2.0), built from Go modules. See go.mod for why
// this wrapper module exists and why this version was chosen.
//
// It only dispatches os.Args to Consul's own command registry
// (command.RegisteredCommands), so `consul agent`, `consul connect proxy`,
// `consul version`, ... behave as in the upstream binary.
package main

import (
	"fmt"
	"io"
	"log"
	"os"
	"sort"

	mcli "github.com/mitchellh/cli"

	"github.com/hashicorp/consul/command"
	"github.com/hashicorp/consul/command/cli"
	"github.com/hashicorp/consul/command/version"
)

func main() {
	// Consul's packages log through their own loggers; silence the stdlib
	// default logger as upstream does.
	log.SetOutput(io.Discard)

	ui := &cli.BasicUI{BasicUi: mcli.BasicUi{Writer: os.Stdout, ErrorWriter: os.Stderr}}
	commands := command.RegisteredCommands(ui)

	names := make([]string, 0, len(commands))
	for name := range commands {
		names = append(names, name)
	}
	sort.Strings(names)

	runner := &mcli.CLI{
		Name:         "consul",
		Args:         os.Args[1:],
		Commands:     commands,
		Autocomplete: true,
		HelpFunc:     mcli.FilteredHelpFunc(names, mcli.BasicHelpFunc("consul")),
		HelpWriter:   os.Stdout,
		ErrorWriter:  os.Stderr,
	}

	// `consul -v` / `consul --version` behave like `consul version`.
	if runner.IsVersion() {
		os.Exit(version.New(ui).Run(nil))
	}

	code, err := runner.Run()
	if err != nil {
		fmt.Fprintf(os.Stderr, "Error executing CLI: %v\n", err)
		os.Exit(1)
	}
	os.Exit(code)
}
