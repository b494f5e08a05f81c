// Command nomad is coromesh's own thin entry point for the real HashiCorp Nomad
// agent and CLI (MPL-2.0), built from Go modules. See go.mod for why this
// wrapper module exists and why this version was chosen.
//
// Nomad's own main.go is package main at the root of its module, so it cannot
// be imported; this file only dispatches os.Args to Nomad's command registry
// (command.Commands), so `nomad agent`, `nomad job run`, `nomad version`, and
// the hidden subcommands Nomad re-executes itself with (`nomad executor`,
// `nomad logmon`, ...) behave as in the upstream binary. Upstream's grouped
// help text is not reproduced: `nomad -help` lists the commands alphabetically.
package main

import (
	"fmt"
	"os"

	// Order matters, as upstream notes: these packages' init() functions check
	// os.Args and take over when Nomad re-executes itself as a task's helper
	// process (the raw_exec driver's executor, the log collector, the artifact
	// getter), before the rest of Nomad is initialised.
	_ "github.com/hashicorp/nomad/client/allocrunner/taskrunner/getter"
	_ "github.com/hashicorp/nomad/client/logmon"
	_ "github.com/hashicorp/nomad/drivers/docker/docklog"
	_ "github.com/hashicorp/nomad/drivers/shared/executor"

	"github.com/hashicorp/nomad/command"
	"github.com/hashicorp/nomad/version"
	"github.com/mitchellh/cli"
)

// Commands upstream hides from help and autocompletion: internal helpers that
// Nomad starts itself, and deprecated aliases.
var hiddenCommands = []string{
	"alloc-status", "check", "client-config", "debug", "eval-status", "executor",
	"logmon", "node-drain", "node-status", "server-force-leave", "server-join",
	"server-members", "syslog", "docker_logger",
	"operator raft _info", "operator raft _logs", "operator raft _state",
	"operator snapshot _state",
}

func main() {
	args := os.Args[1:]
	meta := new(command.Meta)
	meta.SetupUi(args)

	// The agent's own output is never coloured.
	agentUI := &cli.BasicUi{Reader: os.Stdin, Writer: os.Stdout, ErrorWriter: os.Stderr}

	runner := &cli.CLI{
		Name:                       "nomad",
		Version:                    version.GetVersion().FullVersionNumber(true),
		Args:                       args,
		Commands:                   command.Commands(meta, agentUI),
		HiddenCommands:             hiddenCommands,
		Autocomplete:               true,
		AutocompleteNoDefaultFlags: true,
		HelpFunc:                   cli.BasicHelpFunc("nomad"),
		HelpWriter:                 os.Stdout,
	}

	code, err := runner.Run()
	if err != nil {
		fmt.Fprintf(os.Stderr, "Error executing CLI: %v\n", err)
		os.Exit(1)
	}
	os.Exit(code)
}
