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
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/diarysync/diarysync/client"
	"github.com/diarysync/diarysync/internal/buildinfo"
	"github.com/diarysync/diarysync/internal/litedb"
	"github.com/diarysync/diarysync/syncengine"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// command is one "diary" command or administration subcommand. Its
// run function makes its flag set with env.flags, so that --help prints
// its usage and flags (see env.parse).
type command struct {
	path     string // the words that name it: "write", "admin user add"
	synopsis string // what follows them in its usage line
	summary  string // what it does, in one sentence
	run      func(e *env, args []string) error
}

// commands is every command, in the order the usage lists them.
var commands = []command{
	{"write", "[--title T] [--date YYYY-MM-DD] [--tag T]... [--mood N] [--share none|supervisor|research|both] [--body TEXT]", "Write a new entry (the body from --body, standard input or $EDITOR).", cmdWrite},
	{"edit", "ID [same flags as write] [--add-tag T]... [--remove-tag T]...", "Change an entry; with no flags, its body from standard input or $EDITOR.", cmdEdit},
	{"delete", "ID", "Delete an entry (it can be restored).", func(e *env, args []string) error { return cmdDelete(e, args, true) }},
	{"restore", "ID", "Restore a deleted entry.", func(e *env, args []string) error { return cmdDelete(e, args, false) }},
	{"list", "[--json] [--from D] [--to D] [--tag T] [--shared any|supervisor|research|none] [--deleted] [--limit N]", "List entries, newest date first.", cmdList},
	{"show", "ID [--json]", "Show one entry, with its feedback.", cmdShow},
	{"inbox", "[--json] [--unread] [--watch]", "A supervisor's inbox: the reflections shared with them, newest first.", cmdInbox},
	{"feedback", "ID --body TEXT", "Leave a supervisor's feedback on a shared entry.", cmdFeedback},
	{"enrol", "--server URL --code CODE [--name DEVICE] [--replace] | --link LINK", "Enrol this profile as a device with a one-time code (LINK: what an enrolment QR code holds).", cmdEnrol},
	{"sync", "[--watch]", "Send what this device wrote and receive what changed.", cmdSync},
	{"status", "[--json]", "Show the profile, what waits to be synced, and devices asking to join.", cmdStatus},
	{"refused", "[--json]", "List the changes the server refused, with the reason and the text.", cmdRefused},
	{"refused dismiss", "SEQ", "Forget a refused change once seen.", cmdRefusedDismiss},
	{"repair", "", "Rebuild a damaged replica from the server, keeping every unsynced change it can read.", cmdRepair},
	{"device list", "[--json]", "List this account's devices.", cmdDeviceList},
	{"device approve", "ID", "Let a device waiting to join this account sync.", func(e *env, args []string) error { return cmdDeviceAct(e, args, "approve") }},
	{"device deny", "ID", "Refuse a device waiting to join this account; what it wrote is erased.", func(e *env, args []string) error { return cmdDeviceAct(e, args, "deny") }},
	{"device revoke", "ID", "Revoke one of this account's devices (a lost phone, or this one).", func(e *env, args []string) error { return cmdDeviceAct(e, args, "revoke") }},
	{"activity", "[--json] [--limit N]", "Show what was done with this account and its data: devices, codes, resets, exports, erasures.", cmdActivity},
	{"export", "--wave N|all --format csv|jsonl|qdpx|qdc --out FILE|- [--manifest PATH] [--navigator CODE] [--from D] [--to D] [--since ID|OLD.manifest.json] [--bom] [--no-formula-guard]", "Export a wave for research (researchers).", cmdExport},
	{"export list", "[--json] [--limit N]", "List earlier exports, newest first.", cmdExportList},
	{"export preview", "--wave N|all [--navigator CODE] [--from D] [--to D]", "Show what an export would hold, without making it.", cmdExportPreview},
	{"version", "[--json]", "Print the version and revision of this build.", cmdVersion},
	{"admin user add", "--role ROLE --code CODE [--name NAME]", "Create a user.", adminUserAdd},
	{"admin user list", "[--json]", "List users.", adminUserList},
	{"admin user deactivate", "CODE", "Deactivate a user and revoke their devices.", adminUserDeactivate},
	{"admin user reset", "CODE [--ttl 24h]", "For a lost only device: revoke all of a user's devices and issue a code that enrols one without approval.", adminUserReset},
	{"admin assign", "--supervisor CODE --navigator CODE", "Let a supervisor see what a navigator shares with supervisors.", func(e *env, args []string) error { return adminAssign(e, args, true) }},
	{"admin unassign", "--supervisor CODE --navigator CODE", "Withdraw an assignment.", func(e *env, args []string) error { return adminAssign(e, args, false) }},
	{"admin assignments", "[--supervisor CODE] [--json]", "List assignments.", adminAssignments},
	{"admin code", "--user CODE [--ttl 24h]", "Issue a one-time enrolment code.", adminCode},
	{"admin device list", "[--user CODE] [--json]", "List devices.", adminDeviceList},
	{"admin device revoke", "DEVICE_ID", "Revoke a device.", adminDeviceRevoke},
	{"admin wave add", "--number N --label L --from DATE --to DATE | --number N --navigator CODE --from DATE --to DATE", "Define an interview wave, or a navigator's own dates for it.", func(e *env, args []string) error { return adminWave(e, args, true) }},
	{"admin wave edit", "--number N --label L --from DATE --to DATE | --number N --navigator CODE --from DATE --to DATE", "Change a wave, or a navigator's own dates for it.", func(e *env, args []string) error { return adminWave(e, args, false) }},
	{"admin wave remove", "--number N --navigator CODE", "Remove a navigator's own dates for a wave (study-wide waves stay).", adminWaveRemove},
	{"admin wave list", "[--json]", "List waves, with navigators' own dates.", adminWaveList},
	{"admin redact add", "TERM [--marker M]", "Add a term (such as a client's name) that research texts never show.", adminRedactAdd},
	{"admin redact remove", "TERM", "Remove a term from the list.", adminRedactRemove},
	{"admin redact list", "[--json]", "List the terms.", adminRedactList},
	{"admin redact show", "", "Show the de-identification setting and its patterns.", adminRedactShow},
	{"admin redact on", "", "Turn de-identification on.", func(e *env, args []string) error { return adminRedactSwitch(e, args, true) }},
	{"admin redact off", "", "Turn de-identification off: research texts as written.", func(e *env, args []string) error { return adminRedactSwitch(e, args, false) }},
	{"admin redact pattern add", "--name N --marker M --regexp RE", "Add (or change) a pattern of personal details.", adminRedactPatternAdd},
	{"admin redact pattern remove", "NAME", "Remove a pattern.", adminRedactPatternRemove},
	{"admin redact pattern reset", "", "Go back to the default patterns.", adminRedactPatternReset},
	{"admin erase", "--entry ID | --navigator CODE", "Erase an entry, or all of a navigator's entries.", adminErase},
	{"admin audit", "[--json] [--limit N]", "Read the audit log, newest first.", adminAudit},
}

// aliases are other names of commands.
var aliases = map[string]string{"enroll": "enrol"}

// usage returns the usage of every command, or of those under prefix.
func usage(prefix string) string {
	var b strings.Builder
	if prefix == "" {
		b.WriteString("usage: diary [--home DIR] COMMAND [flags]\n\n")
	} else {
		fmt.Fprintf(&b, "usage: diary %s SUBCOMMAND [flags]\n\n", prefix)
	}
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	for _, c := range commands {
		if prefix != "" && !strings.HasPrefix(c.path+" ", prefix+" ") {
			continue
		}
		fmt.Fprintf(tw, "  %s %s\t%s\n", c.path, c.synopsis, c.summary)
	}
	tw.Flush()
	b.WriteString(`
ID is an entry id, or its first or last few characters (lists show the
last eight). "diary COMMAND --help" shows a command's flags.

Environment: DIARY_HOME is the profile directory when --home is not given;
DIARY_TIMEOUT (default 45s) is how long diary waits on a silent connection
to the server (for an answer, or the --watch stream) before giving it up.`)
	return b.String()
}

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
	cmd    *command // the command running
	// onFlags, if set, is told of every flag set a command makes (the
	// help test checks that each flag is in the help).
	onFlags func(*flag.FlagSet)
}

// run runs the command line and returns the exit status.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return exitStatus(dispatch(&env{ctx: ctx, stdin: stdin, stdout: stdout, stderr: stderr}, args), stderr)
}

func exitStatus(err error, stderr io.Writer) int {
	if err == nil || errors.Is(err, flag.ErrHelp) {
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

func dispatch(e *env, args []string) error {
	global := flag.NewFlagSet("diary", flag.ContinueOnError)
	global.SetOutput(io.Discard)
	home := global.String("home", "", "profile directory (default $DIARY_HOME or ~/.diarysync)")
	if err := global.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(e.stdout, usage(""))
			return nil
		}
		return usagef("%v", err)
	}
	args = global.Args()
	if len(args) == 0 {
		fmt.Fprintln(e.stderr, usage(""))
		return usagef("no command given")
	}
	e.home = *home
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
	if a, ok := aliases[args[0]]; ok {
		args = append([]string{a}, args[1:]...)
	}
	switch args[0] {
	case "help", "-h", "--help":
		if len(args) > 1 {
			// "diary help write" is "diary write --help".
			return dispatch(e, append(append([]string{"--home", e.home}, args[1:]...), "--help"))
		}
		fmt.Fprintln(e.stdout, usage(""))
		return nil
	}
	// The longest run of leading words that names a command.
	words := 0
	for words < len(args) && !strings.HasPrefix(args[words], "-") {
		words++
	}
	for n := words; n > 0; n-- {
		path := strings.Join(args[:n], " ")
		for i := range commands {
			if commands[i].path == path {
				e.cmd = &commands[i]
				return commands[i].run(e, args[n:])
			}
		}
	}
	// A group of subcommands ("admin", "admin user", "device") named
	// without one of them.
	for n := words; n > 0; n-- {
		prefix := strings.Join(args[:n], " ")
		if !isGroup(prefix) {
			continue
		}
		if n < len(args) && (args[n] == "--help" || args[n] == "-h" || args[n] == "help") {
			fmt.Fprintln(e.stdout, usage(prefix))
			return nil
		}
		if n < words {
			return usagef("unknown subcommand %q of %q%s", args[n], prefix, suggest(args[n], subcommands(prefix)))
		}
		fmt.Fprintln(e.stderr, usage(prefix))
		return usagef("%s needs a subcommand: %s", prefix, strings.Join(subcommands(prefix), ", "))
	}
	return usagef("unknown command %q%s", args[0], suggest(args[0], subcommands("")))
}

// isGroup reports whether prefix names a group of subcommands.
func isGroup(prefix string) bool {
	for _, c := range commands {
		if strings.HasPrefix(c.path, prefix+" ") {
			return true
		}
	}
	return false
}

// subcommands returns the distinct words that follow prefix in command
// paths ("" for the top level).
func subcommands(prefix string) []string {
	var out []string
	for _, c := range commands {
		rest := c.path
		if prefix != "" {
			var ok bool
			if rest, ok = strings.CutPrefix(c.path, prefix+" "); !ok {
				continue
			}
		}
		word, _, _ := strings.Cut(rest, " ")
		if !slices.Contains(out, word) {
			out = append(out, word)
		}
	}
	return out
}

// suggest returns `: did you mean "X"?` for the known word nearest to
// word, when one is near enough to be a typing mistake, and "" otherwise.
func suggest(word string, known []string) string {
	best, bestD := "", 0
	for _, k := range known {
		d := editDistance(strings.ToLower(word), k)
		if best == "" || d < bestD {
			best, bestD = k, d
		}
	}
	if best == "" || bestD > max(1, len(best)/3) {
		return ""
	}
	return fmt.Sprintf(": did you mean %q?", best)
}

// editDistance is the Damerau–Levenshtein distance (with adjacent
// transpositions) between a and b.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}

// flags returns the flag set of the running command. Its help goes to
// standard output (see parse).
func (e *env) flags() *flag.FlagSet {
	fs := flag.NewFlagSet("diary "+e.cmd.path, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if e.onFlags != nil {
		e.onFlags(fs)
	}
	return fs
}

// help prints the running command's usage and flags.
func (e *env) help(fs *flag.FlagSet) {
	fmt.Fprintf(e.stdout, "usage: diary %s %s\n\n%s\n", e.cmd.path, e.cmd.synopsis, e.cmd.summary)
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n > 0 {
		fmt.Fprintln(e.stdout, "\nflags:")
		fs.SetOutput(e.stdout)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
}

// open opens the profile's replica, creating the directory if asked.
func (e *env) open(create bool) (*client.Client, error) {
	silence, err := silenceTimeout()
	if err != nil {
		return nil, err
	}
	path := filepath.Join(e.home, "replica.db")
	if create {
		if err := os.MkdirAll(e.home, 0o700); err != nil {
			return nil, fmt.Errorf("cannot create profile directory %s: %w", e.home, err)
		}
	} else if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("no profile in %s: enrol first with \"diary enrol --server URL --code CODE\" (or pick the profile with --home)", e.home)
	}
	// The profile holds a diary and its device token: an existing
	// directory made wider by hand is tightened, or refused.
	if err := litedb.TightenMode(e.home, 0o700); err != nil {
		return nil, fmt.Errorf("the profile directory must be private: %w", err)
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
// --help prints the command's usage and flags to standard output and
// returns flag.ErrHelp, which the command returns at once (exit 0).
func (e *env) parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				e.help(fs)
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

// noArgs parses flags of a command that takes no positional arguments.
func (e *env) noArgs(fs *flag.FlagSet, args []string) error {
	pos, err := e.parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("%s takes no arguments, only flags (%q is not one)", fs.Name(), pos[0])
	}
	return nil
}

// oneArg parses flags of a command that takes one positional argument,
// named what in the error.
func (e *env) oneArg(fs *flag.FlagSet, args []string, what string) (string, error) {
	pos, err := e.parse(fs, args)
	if err != nil {
		return "", err
	}
	if len(pos) != 1 {
		return "", usagef("%s needs %s", fs.Name(), what)
	}
	return pos[0], nil
}

func cmdVersion(e *env, args []string) error {
	fs := e.flags()
	jsonOut := fs.Bool("json", false, "print JSON")
	if err := e.noArgs(fs, args); err != nil {
		return err
	}
	info := buildinfo.Read()
	if *jsonOut {
		return writeJSON(e.stdout, info)
	}
	fmt.Fprintln(e.stdout, info.String("diary"))
	return nil
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
