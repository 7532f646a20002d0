// Command diaryd is the diarysync server.
//
//	diaryd serve [--data DIR | --database postgres://...] [--addr HOST:PORT] [--tls-cert FILE --tls-key FILE] [--public-url URL] [--metrics-addr HOST:PORT [--pprof]] [--trusted-proxy CIDR] [--log-level LEVEL] [--demo]
//	diaryd admin-code [--data DIR | --database postgres://...]
//	diaryd migrate --from DIR --database postgres://...
//	diaryd backup --to FILE [--data DIR]
//	diaryd version [--json]
//
// Without --database the study is the embedded SQLite file in --data;
// with it, the PostgreSQL database it names, which several diaryd
// processes may share. The web console is at /console/ on the same
// address. Every flag can also be set in the environment:
// DIARYSYNC_DATA, DIARYSYNC_DATABASE, DIARYSYNC_ADDR, DIARYSYNC_TLS_CERT,
// DIARYSYNC_TLS_KEY, DIARYSYNC_PUBLIC_URL, DIARYSYNC_LOG_LEVEL,
// DIARYSYNC_DEMO, DIARYSYNC_SYNCHRONOUS, DIARYSYNC_METRICS_ADDR,
// DIARYSYNC_TRUSTED_PROXY, DIARYSYNC_MAX_STREAMS_PER_DEVICE,
// DIARYSYNC_MAX_STREAMS, DIARYSYNC_CONSOLE_IDLE_TIMEOUT,
// DIARYSYNC_CONSOLE_LIFETIME.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/diarysync/diarysync/internal/buildinfo"
	"github.com/diarysync/diarysync/internal/litedb"
	"github.com/diarysync/diarysync/server"
	"github.com/diarysync/diarysync/server/console"
	"github.com/diarysync/diarysync/server/postgres"
	"github.com/diarysync/diarysync/server/sqlite"
	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	var ue *usageError
	switch {
	case errors.Is(err, flag.ErrHelp):
	case errors.As(err, &ue):
		fmt.Fprintln(os.Stderr, "diaryd:", err)
		os.Exit(2)
	case err != nil:
		fmt.Fprintln(os.Stderr, "diaryd:", err)
		os.Exit(1)
	}
}

// usageError is a mistake in how diaryd was called (exit status 2).
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

const usage = `usage:
  diaryd serve [--data DIR | --database postgres://...] [--addr HOST:PORT] [--tls-cert FILE --tls-key FILE] [--public-url URL] [--metrics-addr HOST:PORT [--pprof]] [--trusted-proxy CIDR] [--log-level LEVEL] [--demo]
  diaryd admin-code [--data DIR | --database postgres://...]
  diaryd migrate --from DIR --database postgres://...
  diaryd backup --to FILE [--data DIR]
  diaryd version [--json]

Run "diaryd serve --help" for the flags.`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return errors.New("no command given")
	}
	switch args[0] {
	case "serve":
		return serve(ctx, args[1:], stdout, stderr)
	case "admin-code":
		return adminCode(ctx, args[1:], stdout, stderr)
	case "migrate":
		return migrate(ctx, args[1:], stdout, stderr)
	case "backup":
		return backup(ctx, args[1:], stdout, stderr)
	case "version":
		return version(args[1:], stdout)
	case "help", "-h", "--help":
		fmt.Fprintln(stdout, usage)
		return nil
	}
	fmt.Fprintln(stderr, usage)
	return usagef("unknown command %q", args[0])
}

// flags returns a flag set whose help (for --help) goes to stdout.
func flags(name, synopsis string, stdout io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		fmt.Fprintf(stdout, "usage: %s %s\n\nflags:\n", name, synopsis)
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	return fs
}

// parse parses flags; a mistake is a usage error (exit status 2), and
// --help prints the usage and returns flag.ErrHelp (exit status 0).
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usagef("%s: %v", fs.Name(), err)
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	return nil
}

func version(args []string, stdout io.Writer) error {
	fs := flags("diaryd version", "[--json]", stdout)
	jsonOut := fs.Bool("json", false, "print JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	info := buildinfo.Read()
	if *jsonOut {
		return json.NewEncoder(stdout).Encode(info)
	}
	fmt.Fprintln(stdout, info.String("diaryd"))
	return nil
}

// durationEnv reads a duration from the environment; an unreadable one
// is left for the flag package to report when given as a flag.
func durationEnv(name string, def time.Duration) time.Duration {
	if v, ok := os.LookupEnv(name); ok {
		if d, err := time.ParseDuration(v); err == nil {
			return d
		}
	}
	return def
}

func env(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}

func dataFlag(fs *flag.FlagSet) *string {
	return fs.String("data", env("DIARYSYNC_DATA", "./diarysync-data"), "data directory (env DIARYSYNC_DATA)")
}

func databaseFlag(fs *flag.FlagSet) *string {
	return fs.String("database", env("DIARYSYNC_DATABASE", ""), "PostgreSQL database URL, such as postgres://user@host/diarysync (env DIARYSYNC_DATABASE); without it, the SQLite file in --data")
}

// dbFile is the study's SQLite file in a data directory.
func dbFile(dir string) string { return filepath.Join(dir, "diarysync.db") }

func openData(ctx context.Context, dir, synchronous string, create bool) (study.Store, error) {
	if create {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("cannot create data directory: %w", err)
		}
	} else if _, err := os.Stat(dbFile(dir)); err != nil {
		return nil, fmt.Errorf("no diarysync database in %s: start the server there once first", dir)
	}
	// The directory holds diary entries and the administrator's code: an
	// existing one made wider by hand is tightened, or refused.
	if err := litedb.TightenMode(dir, 0o700); err != nil {
		return nil, fmt.Errorf("the data directory must be private: %w", err)
	}
	if err := litedb.TightenMode(filepath.Join(dir, "admin-code"), 0o600); err != nil {
		return nil, err
	}
	return sqlite.Open(ctx, dbFile(dir), sqlite.Options{Synchronous: synchronous})
}

// openDatabase opens the PostgreSQL store at url.
func openDatabase(ctx context.Context, url string, log *slog.Logger) (*postgres.DB, error) {
	db, err := postgres.Open(ctx, url, postgres.Options{Logger: log})
	if err != nil {
		return nil, fmt.Errorf("cannot open the PostgreSQL database: %w", err)
	}
	return db, nil
}

// writeAdminCode writes the code to <dir>/admin-code, readable by its
// owner only: it is written to a new 0600 file and renamed over the old
// one, so the code is never in a file with a wider mode.
func writeAdminCode(dir, code string) error {
	path := filepath.Join(dir, "admin-code")
	f, err := os.CreateTemp(dir, ".admin-code-*")
	if err != nil {
		return fmt.Errorf("cannot write %s: %w", path, err)
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("cannot write %s: %w", path, err)
	}
	if _, err := f.WriteString(code + "\n"); err != nil {
		f.Close()
		return fmt.Errorf("cannot write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("cannot write %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("cannot write %s: %w", path, err)
	}
	return nil
}

func serve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flags("diaryd serve", "[flags]", stdout)
	data := dataFlag(fs)
	database := databaseFlag(fs)
	addr := fs.String("addr", env("DIARYSYNC_ADDR", "127.0.0.1:8080"), "address to listen on (env DIARYSYNC_ADDR)")
	cert := fs.String("tls-cert", env("DIARYSYNC_TLS_CERT", ""), "TLS certificate file (env DIARYSYNC_TLS_CERT)")
	key := fs.String("tls-key", env("DIARYSYNC_TLS_KEY", ""), "TLS key file (env DIARYSYNC_TLS_KEY)")
	level := fs.String("log-level", env("DIARYSYNC_LOG_LEVEL", "info"), "log level: debug, info, warn or error (env DIARYSYNC_LOG_LEVEL)")
	demo := fs.Bool("demo", env("DIARYSYNC_DEMO", "") == "1" || env("DIARYSYNC_DEMO", "") == "true", "seed a demo study once and print its enrolment codes (env DIARYSYNC_DEMO=1)")
	synchronous := fs.String("synchronous", env("DIARYSYNC_SYNCHRONOUS", "FULL"), "SQLite synchronous: FULL (every acknowledged push survives power loss) or NORMAL (env DIARYSYNC_SYNCHRONOUS)")
	publicURL := fs.String("public-url", env("DIARYSYNC_PUBLIC_URL", ""), "the server's address as people reach it, such as https://diary.example.org behind a reverse proxy: used in enrolment links and QR codes, and for Secure cookies (env DIARYSYNC_PUBLIC_URL; default: the listen address)")
	idle := fs.Duration("console-idle-timeout", durationEnv("DIARYSYNC_CONSOLE_IDLE_TIMEOUT", study.DefaultSessionIdle), "sign a web console session out after this long unused (env DIARYSYNC_CONSOLE_IDLE_TIMEOUT)")
	lifetime := fs.Duration("console-lifetime", durationEnv("DIARYSYNC_CONSOLE_LIFETIME", study.DefaultSessionLifetime), "sign a web console session out this long after it began (env DIARYSYNC_CONSOLE_LIFETIME)")
	metricsAddr := fs.String("metrics-addr", env("DIARYSYNC_METRICS_ADDR", ""), "serve /metrics on this private address instead of on --addr (env DIARYSYNC_METRICS_ADDR)")
	profiling := fs.Bool("pprof", env("DIARYSYNC_PPROF", "") == "1", "also serve Go's profiler (/debug/pprof/) on --metrics-addr, which it requires (env DIARYSYNC_PPROF=1)")
	trusted := fs.String("trusted-proxy", env("DIARYSYNC_TRUSTED_PROXY", ""), "CIDR prefixes (comma-separated) of reverse proxies whose X-Forwarded-For gives the client's address (env DIARYSYNC_TRUSTED_PROXY)")
	perDevice := fs.Int("max-streams-per-device", envInt("DIARYSYNC_MAX_STREAMS_PER_DEVICE", server.DefaultMaxStreamsPerDevice), "open Subscribe streams one device may hold (env DIARYSYNC_MAX_STREAMS_PER_DEVICE)")
	maxStreams := fs.Int("max-streams", envInt("DIARYSYNC_MAX_STREAMS", server.DefaultMaxStreams), "open Subscribe streams the server holds in all (env DIARYSYNC_MAX_STREAMS)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *publicURL != "" {
		if _, err := console.ParsePublicURL(*publicURL); err != nil {
			return usagef("%s", syncengine.ErrorMessage(err))
		}
	}
	if err := study.CheckSessionLimits(*idle, *lifetime); err != nil {
		return usagef("%s", syncengine.ErrorMessage(err))
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		return usagef("log level %q: use debug, info, warn or error", *level)
	}
	proxies, err := server.ParseTrustedProxies(*trusted)
	if err != nil {
		return usagef("--trusted-proxy: %v", err)
	}
	if *profiling && *metricsAddr == "" {
		return usagef("--pprof needs --metrics-addr: the profiler is served only on a private address")
	}
	if *perDevice < 1 || *maxStreams < 1 {
		return usagef("--max-streams-per-device and --max-streams must be at least 1")
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: lvl}))

	var db study.Store
	where := *data
	if *database != "" {
		pg, err := openDatabase(ctx, *database, log)
		if err != nil {
			return err
		}
		db, where = pg, "PostgreSQL"
	} else {
		if err := os.MkdirAll(*data, 0o700); err != nil {
			return fmt.Errorf("cannot create data directory: %w", err)
		}
		release, err := lockData(*data)
		if err != nil {
			return err
		}
		defer release()
		if db, err = openData(ctx, *data, *synchronous, true); err != nil {
			return err
		}
	}
	defer db.Close()

	// Of several processes starting at once on one database, only the
	// one that created the administrator prints the code.
	code, created, err := db.EnsureAdmin(ctx)
	if err != nil {
		return err
	}
	switch {
	case created && *database != "":
		fmt.Fprintf(stdout, "Created the administrator ADMIN. One-time enrolment code (valid 24 hours; \"diaryd admin-code --database ...\" issues another):\n\n    %s\n\n", code)
	case created:
		if err := writeAdminCode(*data, code); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "Created the administrator ADMIN. One-time enrolment code (valid 24 hours, also in %s):\n\n    %s\n\n",
			filepath.Join(*data, "admin-code"), code)
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("cannot listen on %s: %w", *addr, err)
	}
	scheme := "http"
	if *cert != "" {
		scheme = "https"
	}
	url := scheme + "://" + ln.Addr().String()
	if *publicURL != "" {
		url = strings.TrimRight(*publicURL, "/")
	}
	if *demo {
		people, seeded, err := db.SeedDemo(ctx, time.Now())
		if err != nil {
			ln.Close()
			return err
		}
		printDemo(stdout, url, people, seeded)
	}
	srv := server.New(server.Config{Store: db, Logger: log, TrustedProxies: proxies, MaxStreamsPerDevice: *perDevice, MaxStreams: *maxStreams, PrivateMetrics: *metricsAddr != "",
		PublicURL: *publicURL, Console: console.Config{IdleTimeout: *idle, Lifetime: *lifetime}})
	if *metricsAddr != "" {
		mln, err := net.Listen("tcp", *metricsAddr)
		if err != nil {
			ln.Close()
			return fmt.Errorf("cannot listen on %s for metrics: %w", *metricsAddr, err)
		}
		var h http.Handler = srv.MetricsHandler()
		if *profiling {
			h = withProfiler(h)
		}
		ms := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
		go ms.Serve(mln)
		defer ms.Close()
		log.Info("serving metrics", "url", "http://"+mln.Addr().String()+"/metrics", "pprof", *profiling)
	}
	log.Info("serving", "url", url, "console", url+console.Prefix, "data", where)
	return srv.Serve(ctx, ln, server.ServeOptions{TLSCert: *cert, TLSKey: *key})
}

func envInt(name string, def int) int {
	if v, ok := os.LookupEnv(name); ok {
		if n, err := strconv.Atoi(v); err == nil {
			return n
		}
		return -1 // refused as out of range by the flag checks
	}
	return def
}

func printDemo(w io.Writer, url string, people []study.DemoUser, seeded bool) {
	if seeded {
		fmt.Fprintln(w, "Seeded the demo study: navigators PN-A, PN-B, PN-C; supervisor SUP-1 (assigned to all three); researcher RES-1; four waves (wave 2 holds today).")
	} else {
		fmt.Fprintln(w, "The demo study is already here; fresh one-time codes:")
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, "    study code\trole\tone-time code (24 h)")
	codes := map[string]string{}
	for _, p := range people {
		fmt.Fprintf(tw, "    %s\t%s\t%s\n", p.StudyCode, p.Role, p.Code)
		codes[p.StudyCode] = p.Code
	}
	tw.Flush()
	fmt.Fprintf(w, `
Next, in another terminal (the diary command keeps each person's profile in --home):

    go run ./cmd/diary --home /tmp/pn-a enrol --server %[1]s --code %[2]s --name "PN-A phone"
    go run ./cmd/diary --home /tmp/pn-a write --title "First shift" --share supervisor --body "Met J. at the hostel."
    go run ./cmd/diary --home /tmp/pn-a sync
    go run ./cmd/diary --home /tmp/sup1 enrol --server %[1]s --code %[3]s --name "SUP-1 laptop"
    go run ./cmd/diary --home /tmp/sup1 sync
    go run ./cmd/diary --home /tmp/sup1 inbox

Or open the web console at %[4]s/console/ and, under "First time here?", sign
in with a supervisor's, researcher's or administrator's code (each code works
once: a code used for the console cannot enrol a phone too; restarting with
--demo prints fresh ones).

`, url, codes["PN-A"], codes["SUP-1"], url)
}

func adminCode(ctx context.Context, args []string, stdout, _ io.Writer) error {
	fs := flags("diaryd admin-code", "[--data DIR | --database postgres://...]", stdout)
	data := dataFlag(fs)
	database := databaseFlag(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if *database != "" {
		db, err := openDatabase(ctx, *database, nil)
		if err != nil {
			return err
		}
		defer db.Close()
		code, err := db.AdminCode(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, code)
		return nil
	}
	db, err := openData(ctx, *data, "FULL", false)
	if err != nil {
		return err
	}
	defer db.Close()
	code, err := db.AdminCode(ctx)
	if err != nil {
		return err
	}
	if err := writeAdminCode(*data, code); err != nil {
		return err
	}
	fmt.Fprintln(stdout, code)
	return nil
}

func backup(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flags("diaryd backup", "--to FILE [--data DIR]", stdout)
	data := dataFlag(fs)
	to := fs.String("to", "", "the backup file to write; it must not exist")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *to == "" {
		return usagef("backup needs --to FILE")
	}
	if _, err := os.Stat(dbFile(*data)); err != nil {
		return fmt.Errorf("no diarysync database in %s", *data)
	}
	if err := sqlite.Backup(ctx, dbFile(*data), *to); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Backed up %s to %s.\n", dbFile(*data), *to)
	return nil
}
