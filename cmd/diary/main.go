// Command diary is the diarysync command line: the reference app for
// navigators, supervisors and researchers, and the administrators' tool.
//
// Each person's replica lives in a profile directory: --home, else
// $DIARY_HOME, else ~/.diarysync. Commands that create something print
// only its id; --json prints JSON; errors go to standard error with a
// non-zero exit status.
//
// A connection to the server that stays silent for 45 seconds while diary
// waits on it (for an answer, or for the next heartbeat of the --watch
// stream) is taken for dead, as half-open connections on mobile networks
// are, and given up; $DIARY_TIMEOUT (a duration such as "10s") changes
// that, for networks that drop idle connections sooner and for tests.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/diarysync/diarysync/client"
	"github.com/diarysync/diarysync/syncengine"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `usage: diary [--home DIR] COMMAND [flags]

Writing (navigators):
  write   [--title T] [--date YYYY-MM-DD] [--tag T]... [--mood N] [--share none|supervisor|research|both] [--body TEXT]
  edit    ID [same flags] [--add-tag T]... [--remove-tag T]...
  delete  ID
  restore ID

Reading:
  list    [--json] [--from D] [--to D] [--tag T] [--shared any|supervisor|research|none] [--deleted] [--limit N]
  show    ID [--json]
  inbox   [--json] [--unread] [--watch]     reflections shared with a supervisor, newest first
  feedback ID --body TEXT                  a supervisor's feedback on a shared entry

Sync:
  enrol   --server URL --code CODE [--name DEVICE] | enrol --link LINK   (LINK: what an enrolment QR code holds)
  sync    [--watch]
  status  [--json]
  refused [--json] | refused dismiss SEQ

Research:
  export  --wave N|all --format csv|jsonl|qdpx|qdc --out FILE|- [--manifest PATH] [--navigator CODE]
          [--from D] [--to D] [--since ID|OLD.manifest.json] [--bom] [--no-formula-guard]
  export list [--json] [--limit N]       earlier exports, newest first
  export preview --wave N|all [--navigator CODE] [--from D] [--to D]

Administration:
  admin user add --role ROLE --code CODE [--name NAME] | admin user list | admin user deactivate CODE
  admin assign --supervisor CODE --navigator CODE | admin unassign ... | admin assignments
  admin code --user CODE [--ttl 24h]
  admin device list [--user CODE] | admin device revoke DEVICE_ID
  admin wave add --number N --label L --from DATE --to DATE | admin wave edit ... | admin wave list
  admin wave add|edit --number N --navigator CODE --from DATE --to DATE | admin wave remove --number N --navigator CODE
  admin redact add TERM [--marker M] | admin redact remove TERM | admin redact list [--json]
  admin redact show | admin redact on | admin redact off
  admin redact pattern add --name N --marker M --regexp RE | admin redact pattern remove NAME | admin redact pattern reset
  admin erase --entry ID | admin erase --navigator CODE
  admin audit [--json] [--limit N]

ID may be the first characters of an entry id.

Environment: DIARY_HOME is the profile directory when --home is not given;
DIARY_TIMEOUT (default 45s) is how long diary waits on a silent connection
to the server (for an answer, or the --watch stream) before giving it up.`

// usageError is a mistake in how the command was called (exit status 2).
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

// env is what every command gets.
type env struct {
	ctx    context.Context
	home   string
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}

// run runs the command line and returns the exit status.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	err := dispatch(ctx, args, stdin, stdout, stderr)
	if err == nil {
		return 0
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "diary: %s\n(run \"diary help\" for usage)\n", ue.msg)
		return 2
	}
	fmt.Fprintf(stderr, "diary: %s\n", message(err))
	return 1
}

// message is what a person reads for an error: the application message
// for errors the project knows, the full text otherwise.
func message(err error) string {
	switch syncengine.ErrorCode(err) {
	case syncengine.EINTERNAL:
		return err.Error()
	}
	return syncengine.ErrorMessage(err)
}

func dispatch(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	global := flag.NewFlagSet("diary", flag.ContinueOnError)
	global.SetOutput(io.Discard)
	home := global.String("home", "", "profile directory (default $DIARY_HOME or ~/.diarysync)")
	if err := global.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stdout, usage)
			return nil
		}
		return usagef("%v", err)
	}
	args = global.Args()
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return usagef("no command given")
	}
	e := &env{ctx: ctx, home: *home, stdin: stdin, stdout: stdout, stderr: stderr}
	if e.home == "" {
		e.home = os.Getenv("DIARY_HOME")
	}
	if e.home == "" {
		dir, err := os.UserHomeDir()
		if err != nil {
			return fmt.Errorf("cannot find a home directory: set --home or DIARY_HOME")
		}
		e.home = filepath.Join(dir, ".diarysync")
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "help", "-h", "--help":
		fmt.Fprintln(stdout, usage)
		return nil
	case "enrol", "enroll":
		return cmdEnrol(e, rest)
	case "write":
		return cmdWrite(e, rest)
	case "edit":
		return cmdEdit(e, rest)
	case "delete":
		return cmdDelete(e, rest, true)
	case "restore":
		return cmdDelete(e, rest, false)
	case "list":
		return cmdList(e, rest)
	case "show":
		return cmdShow(e, rest)
	case "inbox":
		return cmdInbox(e, rest)
	case "feedback":
		return cmdFeedback(e, rest)
	case "sync":
		return cmdSync(e, rest)
	case "status":
		return cmdStatus(e, rest)
	case "refused":
		return cmdRefused(e, rest)
	case "export":
		return cmdExport(e, rest)
	case "admin":
		return cmdAdmin(e, rest)
	}
	return usagef("unknown command %q", cmd)
}

// open opens the profile's replica, creating the directory if asked.
func (e *env) open(create bool) (*client.Client, error) {
	path := filepath.Join(e.home, "replica.db")
	if create {
		if err := os.MkdirAll(e.home, 0o700); err != nil {
			return nil, fmt.Errorf("cannot create profile directory %s: %w", e.home, err)
		}
	} else if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("no profile in %s: enrol first with \"diary enrol --server URL --code CODE\" (or pick the profile with --home)", e.home)
	}
	silence, err := silenceTimeout()
	if err != nil {
		return nil, err
	}
	return client.Open(e.ctx, path, client.Options{ResponseTimeout: silence})
}

// silenceTimeout reads $DIARY_TIMEOUT: how long a connection to the
// server may stay silent while diary waits on it (0: the client's
// default, 45 s).
func silenceTimeout() (time.Duration, error) {
	v := os.Getenv("DIARY_TIMEOUT")
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, usagef("DIARY_TIMEOUT=%q is not a duration such as 45s", v)
	}
	return d, nil
}

// withClient opens the replica, runs fn and closes it.
func (e *env) withClient(fn func(c *client.Client) error) error {
	c, err := e.open(false)
	if err != nil {
		return err
	}
	defer c.Close()
	return fn(c)
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// parse parses flags that may come before or after positional arguments
// ("diary edit ID --title T" and "diary edit --title T ID" both work).
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	fs.SetOutput(io.Discard)
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usagef("%s: %v", fs.Name(), err)
		}
		if fs.NArg() == 0 {
			return positional, nil
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// isTerminal reports whether f is a terminal (a character device).
func isTerminal(f any) bool {
	file, ok := f.(*os.File)
	if !ok {
		return false
	}
	st, err := file.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
