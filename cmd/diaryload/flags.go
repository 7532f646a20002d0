package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// Limits on the flags. They keep one run's memory bounded: every latency
// is kept until the report, so pushes and devices are capped together.
const (
	maxDevices     = 10_000
	maxSupervisors = 1_000
	maxPushes      = 100_000
	maxTotalPushes = 2_000_000
	maxPreload     = 10_000_000
	// maxPushChanges is the server's limit on the changes in one push.
	maxPushChanges = 1000
	// pullPageSize is the page size every pull asks for: the server's
	// maximum, which is what the client library asks for too.
	pullPageSize = 1000
)

const usage = `usage: diaryload [flags]

diaryload enrols many devices on a diarysync server at once, makes them
push and pull as fast as the server answers, and reports throughput and
latency. By default it starts its own diaryd on a temporary study.

The load:
  --devices N        navigator devices, one user and one connection each (default 10)
  --supervisors M    supervisors, each holding an open Subscribe stream and pulling
                     when woken; supervisor j supervises navigators j, j+M, j+2M...
                     (default 0)
  --pushes P         pushes per device, each followed by a pull (default 20)
  --entries E        new entries per push, each with a title and a body of
                     about 400 bytes (default 10)
  --share            share the entries with supervisors (default true; --share=false to not)
  --preload K        before the load, push K entries from one extra navigator,
                     500 a push, to measure a large database (default 0)
  --full-pull        after the load, time a fresh device's pull of everything
                     from cursor 0, %[1]d entries a page: the preloading navigator's
                     entries, or the first navigator's without --preload

Bounds:
  --duration D       stop starting pushes after D; the report says so (default 5m)
  --timeout T        give up the whole run after T, setup included (default 30m)
  --rpc-timeout T    give up one call after T (default 1m)

The server:
  --diaryd PATH      diaryd binary to start (default: diaryd next to this binary,
                     else "go build" of ./cmd/diaryd in this module)
  --data DIR         data directory for the diaryd it starts, kept afterwards
                     (default: a temporary directory, removed)
  --synchronous S    SQLite synchronous of the diaryd it starts: FULL or NORMAL (default FULL)
  --database URL     start diaryd on this PostgreSQL database (postgres://...) instead of
                     SQLite; what the run writes stays in it
  --server URL       load this running server instead of starting one
  --admin-home DIR   with --server: a diary profile directory enrolled as an administrator
  --metrics URL      with --server: the server's metrics, such as http://HOST:PORT/metrics
  --cleanup          afterwards erase the navigators' entries and deactivate the users
                     this run created (with --server, --data or --database)
  --cleanup-only RUN with --server: only erase and deactivate the users of an earlier
                     run (its run id, or "all" for every LOAD- user), then stop

Output:
  --json             print one JSON object instead of a table

What it measures:
  push, pull latency   each Push and Pull call of the navigators, from sending it
                       to its answer
  pushes per second    acknowledged pushes over the wall time of the load
  wake latency         from a push's answer reaching its navigator to the
                       supervisor receiving the first Subscribe message whose
                       cursor covers the push; 0 when that message came first
  server memory        for the diaryd it starts, the peak resident memory of the
                       process (VmHWM) and the Go heap from its metrics; with
                       --metrics, what those metrics expose
  CPU                  while pushing (Linux): the server's (its process, or
                       process_cpu_seconds_total with --metrics), diaryload's,
                       and the share of this machine's cores busy and stolen by
                       its hypervisor, which moves figures on a shared machine
  group commits        while pushing, from the server's metrics (for the diaryd it
                       starts, or with --metrics): how many, the pushes each held,
                       and the share of the time the server's single writer was
                       busy running them (near all the time, pushes queue behind it)
  errors               failed calls by Connect code; refused changes by reason

Users carry study codes LOAD-<run>-N00001 (navigators), LOAD-<run>-S0001
(supervisors) and LOAD-<run>-P (the preloading navigator).`

// config is the parsed command line.
type config struct {
	devices, supervisors, pushes, entries int
	share                                 bool
	preload                               int
	fullPull                              bool

	duration, timeout, rpcTimeout time.Duration

	diaryd, data, synchronous  string
	database                   string
	server, adminHome, metrics string
	cleanup                    bool
	cleanupOnly                string

	json bool
}

// changesPerEntry is how many changes create one entry: title and body,
// and the sharing flag when shared.
func (c *config) changesPerEntry() int {
	if c.share {
		return 3
	}
	return 2
}

var runIDPattern = regexp.MustCompile(`^[A-Z0-9]{1,12}$`)

// parseFlags parses the command line. It writes the usage to stdout for
// --help and returns flag.ErrHelp; other mistakes are usage errors.
func parseFlags(args []string, stdout io.Writer) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("diaryload", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	fs.IntVar(&c.devices, "devices", 10, "")
	fs.IntVar(&c.supervisors, "supervisors", 0, "")
	fs.IntVar(&c.pushes, "pushes", 20, "")
	fs.IntVar(&c.entries, "entries", 10, "")
	fs.BoolVar(&c.share, "share", true, "")
	fs.IntVar(&c.preload, "preload", 0, "")
	fs.BoolVar(&c.fullPull, "full-pull", false, "")
	fs.DurationVar(&c.duration, "duration", 5*time.Minute, "")
	fs.DurationVar(&c.timeout, "timeout", 30*time.Minute, "")
	fs.DurationVar(&c.rpcTimeout, "rpc-timeout", time.Minute, "")
	fs.StringVar(&c.diaryd, "diaryd", "", "")
	fs.StringVar(&c.data, "data", "", "")
	fs.StringVar(&c.synchronous, "synchronous", "FULL", "")
	fs.StringVar(&c.database, "database", "", "")
	fs.StringVar(&c.server, "server", "", "")
	fs.StringVar(&c.adminHome, "admin-home", "", "")
	fs.StringVar(&c.metrics, "metrics", "", "")
	fs.BoolVar(&c.cleanup, "cleanup", false, "")
	fs.StringVar(&c.cleanupOnly, "cleanup-only", "", "")
	fs.BoolVar(&c.json, "json", false, "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stdout, usage+"\n", pullPageSize)
			return nil, err
		}
		return nil, usagef("%v", err)
	}
	if fs.NArg() > 0 {
		return nil, usagef("unexpected argument %q: diaryload takes only flags", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if err := c.check(set); err != nil {
		return nil, err
	}
	return c, nil
}

// check validates the values and how the flags combine; set holds the
// flags given on the command line.
func (c *config) check(set map[string]bool) error {
	between := func(name string, v, lo, hi int) error {
		if v < lo || v > hi {
			return usagef("--%s %d: must be from %d to %d", name, v, lo, hi)
		}
		return nil
	}
	positive := func(name string, d time.Duration) error {
		if d <= 0 {
			return usagef("--%s %s: must be a positive duration such as 30s", name, d)
		}
		return nil
	}
	perPush := maxPushChanges / c.changesPerEntry()
	for _, err := range []error{
		between("devices", c.devices, 1, maxDevices),
		between("supervisors", c.supervisors, 0, maxSupervisors),
		between("pushes", c.pushes, 0, maxPushes),
		between("preload", c.preload, 0, maxPreload),
		positive("duration", c.duration),
		positive("timeout", c.timeout),
		positive("rpc-timeout", c.rpcTimeout),
	} {
		if err != nil {
			return err
		}
	}
	if c.entries < 1 || c.entries > perPush {
		return usagef("--entries %d: must be from 1 to %d (a push carries at most %d changes, and an entry takes %d)", c.entries, perPush, maxPushChanges, c.changesPerEntry())
	}
	if c.supervisors > c.devices {
		return usagef("--supervisors %d: must not exceed --devices %d, or some supervisor would have nobody to supervise", c.supervisors, c.devices)
	}
	if c.devices*c.pushes > maxTotalPushes {
		return usagef("--devices %d × --pushes %d is %d pushes: at most %d in one run", c.devices, c.pushes, c.devices*c.pushes, maxTotalPushes)
	}
	switch strings.ToUpper(c.synchronous) {
	case "FULL", "NORMAL":
		c.synchronous = strings.ToUpper(c.synchronous)
	default:
		return usagef("--synchronous %q: use FULL or NORMAL", c.synchronous)
	}
	if c.server == "" {
		for _, name := range []string{"admin-home", "metrics", "cleanup-only"} {
			if set[name] {
				return usagef("--%s needs --server", name)
			}
		}
		if c.database != "" {
			for _, name := range []string{"data", "synchronous"} {
				if set[name] {
					return usagef("--%s is for a diaryd on SQLite; it cannot be used with --database", name)
				}
			}
		}
		if c.cleanup && c.data == "" && c.database == "" {
			return usagef("--cleanup needs --server, --data or --database: a temporary study is removed with its data anyway")
		}
		return nil
	}
	for _, name := range []string{"diaryd", "data", "synchronous", "database"} {
		if set[name] {
			return usagef("--%s is for the diaryd that diaryload starts; it cannot be used with --server", name)
		}
	}
	if err := checkURL("server", c.server); err != nil {
		return err
	}
	c.server = strings.TrimRight(c.server, "/")
	if c.adminHome == "" {
		return usagef("--server needs --admin-home: the profile of an administrator enrolled with \"diary enrol\", to create the load's users")
	}
	if c.metrics != "" {
		if err := checkURL("metrics", c.metrics); err != nil {
			return err
		}
	}
	if c.cleanupOnly != "" {
		c.cleanupOnly = strings.ToUpper(c.cleanupOnly)
		if c.cleanupOnly != "ALL" && !runIDPattern.MatchString(c.cleanupOnly) {
			return usagef("--cleanup-only %q: give a run id as printed by an earlier run, or \"all\"", c.cleanupOnly)
		}
	}
	return nil
}

func checkURL(name, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return usagef("--%s %q: want a URL such as http://127.0.0.1:8080", name, raw)
	}
	return nil
}
