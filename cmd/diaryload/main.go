// Command diaryload puts a diarysync server under the load of many devices
// syncing at once, as on a morning when the network comes back and every
// navigator's phone syncs together, and reports what it measured.
//
//	diaryload [--devices N] [--supervisors M] [--pushes P] [--entries E] [--json]
//	diaryload --server URL --admin-home DIR [--metrics URL] [--cleanup] ...
//
// By default it starts its own diaryd on a temporary SQLite study, enrols
// an administrator with the server's one-time admin code, and creates its
// users through the API. With --server it loads a server that is already
// running, creating its users (study codes LOAD-<run>-...) with the
// administrator profile that the diary command keeps in --admin-home;
// --cleanup erases them and their entries afterwards.
//
// Each navigator device pushes --pushes batches of --entries new entries
// and pulls after each push; each supervisor keeps a Subscribe stream open
// and pulls when it is woken. The devices speak the API directly over
// HTTP/2, one connection each, and keep no local replica, so the load
// side does not write to disk. It talks only to the server it starts or
// is given, and to --metrics.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "diaryload: %v\n", err)
	}
	os.Exit(exitStatus(err))
}

// usageError is a mistake in how the command was called.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg + "\n(run \"diaryload --help\" for usage)" }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

// exitStatus is the process's exit status for what run returned: 0 for
// success and --help, 2 for a usage mistake, 1 for anything else.
func exitStatus(err error) int {
	var ue *usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		return 2
	}
	return 1
}

// run parses args, runs the load and writes the report to stdout.
// Progress goes to stderr when it is a terminal.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseFlags(args, stdout)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	progress := newProgress(stderr)
	defer progress.stop()
	if cfg.cleanupOnly != "" {
		return cleanupOnly(ctx, cfg, stdout, progress)
	}
	rep, err := load(ctx, cfg, progress)
	progress.stop()
	if rep != nil {
		if werr := writeReport(stdout, cfg, rep); werr != nil && err == nil {
			err = werr
		}
	}
	return err
}
