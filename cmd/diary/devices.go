package main

import (
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/diarysync/diarysync/client"
	"github.com/diarysync/diarysync/study"
)

func cmdDeviceList(e *env, args []string) error {
	fs := e.flags()
	jsonOut := fs.Bool("json", false, "print JSON, one device per line")
	if err := e.noArgs(fs, args); err != nil {
		return err
	}
	return e.withClient(func(c *client.Client) error { return e.printDevices(c, *jsonOut) })
}

// cmdDeviceAct approves, denies or revokes one of the account's devices.
func cmdDeviceAct(e *env, args []string, act string) error {
	fs := e.flags()
	arg, err := e.oneArg(fs, args, "a device id (see \"diary device list\")")
	if err != nil {
		return err
	}
	return e.withClient(func(c *client.Client) error {
		id, err := e.findDevice(c, arg)
		if err != nil {
			return err
		}
		var d client.Device
		switch act {
		case "approve":
			d, err = c.ApproveDevice(e.ctx, id)
		case "deny":
			d, err = c.DenyDevice(e.ctx, id)
		default:
			d, err = c.RevokeDevice(e.ctx, id)
		}
		if err != nil {
			return err
		}
		switch act {
		case "approve":
			fmt.Fprintf(e.stderr, "Approved %s (%s): it receives your diary at its next sync.\n", d.Name, d.ID)
		case "deny":
			fmt.Fprintf(e.stderr, "Denied %s (%s): it is revoked, and what it wrote while waiting is erased.\n", d.Name, d.ID)
		default:
			fmt.Fprintf(e.stderr, "Revoked %s (%s).\n", d.Name, d.ID)
		}
		return nil
	})
}

// findDevice resolves a device id given in full or by its first
// characters, among the account's devices.
func (e *env) findDevice(c *client.Client, s string) (string, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if len(s) == 36 {
		return s, nil
	}
	var found []string
	for tok := ""; ; {
		page, next, err := c.Devices(e.ctx, tok)
		if err != nil {
			return "", err
		}
		for _, d := range page {
			if strings.HasPrefix(d.ID, s) {
				found = append(found, d.ID)
			}
		}
		if tok = next; tok == "" {
			break
		}
	}
	switch {
	case s == "" || len(found) == 0:
		return "", usagef("none of your devices has an id starting with %q (see \"diary device list\")", s)
	case len(found) > 1:
		return "", usagef("%q could be any of %d devices: give more of the id", s, len(found))
	}
	return found[0], nil
}

func deviceState(d client.Device) string {
	switch d.State {
	case study.DevicePending:
		return "waiting for approval"
	case study.DeviceRevoked:
		return "revoked (" + revocationLabel(d.Revocation, d.RevokedBy) + ")"
	}
	return "active"
}

func revocationLabel(r study.Revocation, by string) string {
	switch r {
	case study.RevokedSelf:
		return "signed out"
	case study.RevokedByUser:
		return "by you, from another device"
	case study.RevokedDenied:
		return "denied"
	case study.RevokedByReset:
		return "account reset by " + by
	case study.RevokedDeactivated:
		return "account deactivated"
	}
	return "by an administrator, " + by
}

func (e *env) printDevices(c *client.Client, jsonOut bool) error {
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	if !jsonOut {
		fmt.Fprintln(tw, "\tDEVICE\tNAME\tSTATE\tENROLLED\tCODE FROM\tLAST SYNC")
	}
	for tok := ""; ; {
		page, next, err := c.Devices(e.ctx, tok)
		if err != nil {
			return err
		}
		for _, d := range page {
			if jsonOut {
				m := map[string]any{"device_id": d.ID, "name": d.Name, "state": d.State.String(), "this_device": d.This,
					"enrolled_at": d.EnrolledAt, "issued_by": d.IssuedBy, "approved_at": timeOrNil(d.ApprovedAt), "approved_by": d.ApprovedBy,
					"last_sync_at": timeOrNil(d.LastSyncAt), "revoked_at": timeOrNil(d.RevokedAt), "revoked_by": d.RevokedBy}
				if d.State == study.DeviceRevoked {
					m["revocation"] = d.Revocation.String()
				}
				if err := writeJSON(e.stdout, m); err != nil {
					return err
				}
				continue
			}
			mark := ""
			if d.This {
				mark = "*"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", mark, d.ID, d.Name, deviceState(d), localTime(d.EnrolledAt), d.IssuedBy, localTime(d.LastSyncAt))
		}
		if tok = next; tok == "" {
			break
		}
	}
	if !jsonOut {
		return tw.Flush()
	}
	return nil
}

func timeOrNil(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}

func localTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04")
}

func cmdActivity(e *env, args []string) error {
	fs := e.flags()
	jsonOut := fs.Bool("json", false, "print JSON, one event per line")
	limit := fs.Int("limit", 0, "at most this many events, newest first (default: all)")
	if err := e.noArgs(fs, args); err != nil {
		return err
	}
	if *limit < 0 {
		return usagef("--limit must not be negative")
	}
	return e.withClient(func(c *client.Client) error {
		tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
		if !*jsonOut {
			fmt.Fprintln(tw, "WHEN\tWHO\tWHAT\tDETAILS")
		}
		n := 0
		for tok := ""; ; {
			page, next, err := c.Activity(e.ctx, tok, 500)
			if err != nil {
				return err
			}
			for _, a := range page {
				if *limit > 0 && n >= *limit {
					break
				}
				n++
				if *jsonOut {
					if err := writeJSON(e.stdout, map[string]any{"id": a.ID, "at": a.At, "actor": a.Actor, "action": a.Action, "subject": a.Subject, "details": a.Details}); err != nil {
						return err
					}
					continue
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", localTime(a.At), a.Actor, describeActivity(a), details(a.Details))
			}
			if tok = next; tok == "" || (*limit > 0 && n >= *limit) {
				break
			}
		}
		if !*jsonOut {
			return tw.Flush()
		}
		return nil
	})
}

// describeActivity says in words what an audit event did with the
// person's account or data.
func describeActivity(a client.Activity) string {
	switch a.Action {
	case "device.enrol":
		return "enrolled a device (" + a.Details["name"] + ", " + a.Details["state"] + ") with a code they issued"
	case "device.approve":
		return "approved device " + a.Details["name"]
	case "device.deny":
		return "denied device " + a.Details["name"]
	case "device.revoke":
		return "revoked device " + a.Details["name"]
	case "code.issue":
		return "issued an enrolment code"
	case "user.reset":
		return "reset the account (all devices revoked)"
	case "user.create":
		return "created the account"
	case "user.deactivate":
		return "deactivated the account"
	case "assign":
		return "let supervisor " + a.Details["supervisor"] + " see what you share with supervisors"
	case "unassign":
		return "took you off supervisor " + a.Details["supervisor"]
	case "export":
		return "exported wave " + a.Subject + " for research, with your shared entries"
	case "entry.erase":
		return "erased entry " + a.Subject
	case "navigator.erase":
		return "erased all your entries"
	}
	return a.Action + " " + a.Subject
}

func details(m map[string]string) string {
	var out []string
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	slices.Sort(out)
	return strings.Join(out, " ")
}
