package main

import (
	"flag"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/diarysync/diarysync/client"
	diaryv1 "github.com/diarysync/diarysync/proto/diary/v1"
	"github.com/diarysync/diarysync/proto/diary/v1/diaryv1connect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func cmdAdmin(e *env, args []string) error {
	if len(args) == 0 {
		return usagef("admin needs a subcommand: user, assign, unassign, assignments, code, device, wave, redact, erase or audit")
	}
	return e.withClient(func(c *client.Client) error {
		admin, err := c.Admin()
		if err != nil {
			return err
		}
		a := &adminCmd{env: e, svc: admin}
		sub, rest := args[0], args[1:]
		switch sub {
		case "user":
			return a.user(rest)
		case "assign":
			return a.assign(rest, true)
		case "unassign":
			return a.assign(rest, false)
		case "assignments":
			return a.assignments(rest)
		case "code":
			return a.code(rest)
		case "device":
			return a.device(rest)
		case "wave":
			return a.wave(rest)
		case "redact":
			return a.redact(rest)
		case "erase":
			return a.erase(rest)
		case "audit":
			return a.audit(rest)
		}
		return usagef("unknown admin subcommand %q", sub)
	})
}

type adminCmd struct {
	*env
	svc diaryv1connect.AdminServiceClient
}

func rpcErr(action string, err error) error {
	if err == nil {
		return nil
	}
	return adminError{action, err}
}

// adminError shows the server's message for a failed admin call.
type adminError struct {
	action string
	err    error
}

func (e adminError) Error() string {
	msg := e.err.Error()
	// connect errors read "code: message"; the message alone is enough.
	if _, after, ok := strings.Cut(msg, ": "); ok {
		msg = after
	}
	return "cannot " + e.action + ": " + msg
}

func ts(t *timestamppb.Timestamp) string {
	if t == nil {
		return "-"
	}
	return t.AsTime().Local().Format("2006-01-02 15:04")
}

func (a *adminCmd) user(args []string) error {
	if len(args) == 0 {
		return usagef("admin user needs add, list or deactivate")
	}
	switch args[0] {
	case "add":
		fs := flag.NewFlagSet("admin user add", flag.ContinueOnError)
		role := fs.String("role", "", "navigator, supervisor, researcher or admin")
		code := fs.String("code", "", "study code, such as PN-D")
		name := fs.String("name", "", "display name (never shown to research)")
		if pos, err := parse(fs, args[1:]); err != nil {
			return err
		} else if len(pos) > 0 {
			return usagef("admin user add takes only flags")
		}
		r, ok := map[string]diaryv1.Role{"navigator": diaryv1.Role_ROLE_NAVIGATOR, "supervisor": diaryv1.Role_ROLE_SUPERVISOR, "researcher": diaryv1.Role_ROLE_RESEARCHER, "admin": diaryv1.Role_ROLE_ADMIN}[strings.ToLower(*role)]
		if !ok {
			return usagef("--role must be navigator, supervisor, researcher or admin")
		}
		if *code == "" {
			return usagef("admin user add needs --code")
		}
		resp, err := a.svc.CreateUser(a.ctx, &diaryv1.CreateUserRequest{StudyCode: *code, Role: r, DisplayName: *name})
		if err != nil {
			return rpcErr("add user", err)
		}
		fmt.Fprintln(a.stdout, resp.GetUser().GetStudyCode())
		return nil
	case "list":
		fs := flag.NewFlagSet("admin user list", flag.ContinueOnError)
		jsonOut := fs.Bool("json", false, "print JSON, one user per line")
		if _, err := parse(fs, args[1:]); err != nil {
			return err
		}
		tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
		if !*jsonOut {
			fmt.Fprintln(tw, "CODE\tROLE\tNAME\tACTIVE\tCREATED")
		}
		for tok := ""; ; {
			resp, err := a.svc.ListUsers(a.ctx, &diaryv1.ListUsersRequest{PageSize: 500, PageToken: tok})
			if err != nil {
				return rpcErr("list users", err)
			}
			for _, u := range resp.GetUsers() {
				role := strings.ToLower(strings.TrimPrefix(u.GetRole().String(), "ROLE_"))
				if *jsonOut {
					writeJSON(a.stdout, map[string]any{"study_code": u.GetStudyCode(), "role": role, "display_name": u.GetDisplayName(), "active": u.GetActive(), "created_at": u.GetCreatedAt().AsTime()})
				} else {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%s\n", u.GetStudyCode(), role, u.GetDisplayName(), u.GetActive(), ts(u.GetCreatedAt()))
				}
			}
			if tok = resp.GetNextPageToken(); tok == "" {
				break
			}
		}
		if !*jsonOut {
			return tw.Flush()
		}
		return nil
	case "deactivate":
		if len(args) != 2 {
			return usagef("admin user deactivate needs a study code")
		}
		resp, err := a.svc.DeactivateUser(a.ctx, &diaryv1.DeactivateUserRequest{StudyCode: args[1]})
		if err != nil {
			return rpcErr("deactivate user", err)
		}
		fmt.Fprintf(a.stderr, "Deactivated %s; revoked %d device(s).\n", resp.GetUser().GetStudyCode(), resp.GetDevicesRevoked())
		return nil
	}
	return usagef("unknown admin user subcommand %q", args[0])
}

func (a *adminCmd) assign(args []string, assign bool) error {
	fs := flag.NewFlagSet("admin assign", flag.ContinueOnError)
	sup := fs.String("supervisor", "", "supervisor's study code")
	nav := fs.String("navigator", "", "navigator's study code")
	if pos, err := parse(fs, args); err != nil {
		return err
	} else if len(pos) > 0 || *sup == "" || *nav == "" {
		return usagef("needs --supervisor CODE --navigator CODE")
	}
	if assign {
		resp, err := a.svc.AssignNavigator(a.ctx, &diaryv1.AssignNavigatorRequest{SupervisorCode: *sup, NavigatorCode: *nav})
		if err != nil {
			return rpcErr("assign", err)
		}
		if !resp.GetCreated() {
			fmt.Fprintf(a.stderr, "%s was already assigned to %s.\n", *nav, *sup)
		}
		return nil
	}
	resp, err := a.svc.UnassignNavigator(a.ctx, &diaryv1.UnassignNavigatorRequest{SupervisorCode: *sup, NavigatorCode: *nav})
	if err != nil {
		return rpcErr("unassign", err)
	}
	if !resp.GetRemoved() {
		fmt.Fprintf(a.stderr, "%s was not assigned to %s.\n", *nav, *sup)
	}
	return nil
}

func (a *adminCmd) assignments(args []string) error {
	fs := flag.NewFlagSet("admin assignments", flag.ContinueOnError)
	sup := fs.String("supervisor", "", "only this supervisor's")
	jsonOut := fs.Bool("json", false, "print JSON, one per line")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
	if !*jsonOut {
		fmt.Fprintln(tw, "SUPERVISOR\tNAVIGATOR\tSINCE")
	}
	for tok := ""; ; {
		resp, err := a.svc.ListAssignments(a.ctx, &diaryv1.ListAssignmentsRequest{PageSize: 500, PageToken: tok, SupervisorCode: *sup})
		if err != nil {
			return rpcErr("list assignments", err)
		}
		for _, as := range resp.GetAssignments() {
			if *jsonOut {
				writeJSON(a.stdout, map[string]any{"supervisor": as.GetSupervisorCode(), "navigator": as.GetNavigatorCode(), "created_at": as.GetCreatedAt().AsTime()})
			} else {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", as.GetSupervisorCode(), as.GetNavigatorCode(), ts(as.GetCreatedAt()))
			}
		}
		if tok = resp.GetNextPageToken(); tok == "" {
			break
		}
	}
	if !*jsonOut {
		return tw.Flush()
	}
	return nil
}

func (a *adminCmd) code(args []string) error {
	fs := flag.NewFlagSet("admin code", flag.ContinueOnError)
	user := fs.String("user", "", "the study code of the person enrolling")
	ttl := fs.Duration("ttl", 24*time.Hour, "how long the code works (1m to 168h)")
	if pos, err := parse(fs, args); err != nil {
		return err
	} else if len(pos) > 0 || *user == "" {
		return usagef("admin code needs --user CODE")
	}
	resp, err := a.svc.IssueEnrollmentCode(a.ctx, &diaryv1.IssueEnrollmentCodeRequest{StudyCode: *user, Ttl: durationpb.New(*ttl)})
	if err != nil {
		return rpcErr("issue a code", err)
	}
	fmt.Fprintln(a.stdout, resp.GetCode())
	return nil
}

func (a *adminCmd) device(args []string) error {
	if len(args) == 0 {
		return usagef("admin device needs list or revoke")
	}
	switch args[0] {
	case "list":
		fs := flag.NewFlagSet("admin device list", flag.ContinueOnError)
		user := fs.String("user", "", "only this user's devices")
		jsonOut := fs.Bool("json", false, "print JSON, one device per line")
		if _, err := parse(fs, args[1:]); err != nil {
			return err
		}
		tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
		if !*jsonOut {
			fmt.Fprintln(tw, "DEVICE\tUSER\tKIND\tNAME\tENROLLED\tLAST SYNC\tREVOKED")
		}
		for tok := ""; ; {
			resp, err := a.svc.ListDevices(a.ctx, &diaryv1.ListDevicesRequest{PageSize: 500, PageToken: tok, StudyCode: *user})
			if err != nil {
				return rpcErr("list devices", err)
			}
			for _, d := range resp.GetDevices() {
				if *jsonOut {
					m := map[string]any{"device_id": d.GetDeviceId(), "study_code": d.GetStudyCode(), "name": d.GetName(), "kind": kindName(d.GetKind()), "enrolled_at": d.GetEnrolledAt().AsTime(), "last_sync_at": nil, "revoked_at": nil}
					if d.GetLastSyncAt() != nil {
						m["last_sync_at"] = d.GetLastSyncAt().AsTime()
					}
					if d.GetRevokedAt() != nil {
						m["revoked_at"] = d.GetRevokedAt().AsTime()
					}
					writeJSON(a.stdout, m)
				} else {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.GetDeviceId(), d.GetStudyCode(), kindName(d.GetKind()), d.GetName(), ts(d.GetEnrolledAt()), ts(d.GetLastSyncAt()), ts(d.GetRevokedAt()))
				}
			}
			if tok = resp.GetNextPageToken(); tok == "" {
				break
			}
		}
		if !*jsonOut {
			return tw.Flush()
		}
		return nil
	case "revoke":
		if len(args) != 2 {
			return usagef("admin device revoke needs a device id")
		}
		if _, err := a.svc.RevokeDevice(a.ctx, &diaryv1.RevokeDeviceRequest{DeviceId: args[1]}); err != nil {
			return rpcErr("revoke device", err)
		}
		return nil
	}
	return usagef("unknown admin device subcommand %q", args[0])
}

func (a *adminCmd) wave(args []string) error {
	if len(args) == 0 {
		return usagef("admin wave needs add, edit, remove or list")
	}
	switch args[0] {
	case "add", "edit":
		fs := flag.NewFlagSet("admin wave "+args[0], flag.ContinueOnError)
		number := fs.Uint("number", 0, "wave number, from 1")
		label := fs.String("label", "", "label, such as Baseline (study-wide waves only)")
		from := fs.String("from", "", "first day, YYYY-MM-DD")
		to := fs.String("to", "", "last day, YYYY-MM-DD")
		navigator := fs.String("navigator", "", "give this navigator (study code) their own dates for the wave")
		if pos, err := parse(fs, args[1:]); err != nil {
			return err
		} else if len(pos) > 0 || *number == 0 || (*label == "" && *navigator == "") || *from == "" || *to == "" {
			return usagef("admin wave %s needs --number N --label L --from DATE --to DATE, or --number N --navigator CODE --from DATE --to DATE", args[0])
		}
		w := &diaryv1.Wave{Number: uint32(*number), Label: *label, StartDate: *from, EndDate: *to, NavigatorCode: *navigator}
		var err error
		if args[0] == "add" {
			_, err = a.svc.CreateWave(a.ctx, &diaryv1.CreateWaveRequest{Wave: w})
		} else {
			_, err = a.svc.UpdateWave(a.ctx, &diaryv1.UpdateWaveRequest{Wave: w})
		}
		if err != nil {
			return rpcErr(args[0]+" wave", err)
		}
		fmt.Fprintln(a.stdout, w.GetNumber())
		return nil
	case "remove":
		fs := flag.NewFlagSet("admin wave remove", flag.ContinueOnError)
		number := fs.Uint("number", 0, "wave number")
		navigator := fs.String("navigator", "", "the navigator whose own dates to remove")
		if pos, err := parse(fs, args[1:]); err != nil {
			return err
		} else if len(pos) > 0 || *number == 0 || *navigator == "" {
			return usagef("admin wave remove needs --number N --navigator CODE: it removes a navigator's own dates (study-wide waves stay)")
		}
		if _, err := a.svc.DeleteWaveDates(a.ctx, &diaryv1.DeleteWaveDatesRequest{Number: uint32(*number), NavigatorCode: *navigator}); err != nil {
			return rpcErr("remove wave dates", err)
		}
		return nil
	case "list":
		fs := flag.NewFlagSet("admin wave list", flag.ContinueOnError)
		jsonOut := fs.Bool("json", false, "print JSON, one wave definition per line")
		if _, err := parse(fs, args[1:]); err != nil {
			return err
		}
		tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
		if !*jsonOut {
			fmt.Fprintln(tw, "WAVE\tLABEL\tNAVIGATOR\tFROM\tTO")
		}
		for tok := ""; ; {
			resp, err := a.svc.ListWaves(a.ctx, &diaryv1.ListWavesRequest{PageSize: 500, PageToken: tok, IncludeNavigatorDates: true})
			if err != nil {
				return rpcErr("list waves", err)
			}
			for _, w := range resp.GetWaves() {
				if *jsonOut {
					writeJSON(a.stdout, map[string]any{"number": w.GetNumber(), "label": w.GetLabel(), "navigator": w.GetNavigatorCode(), "start_date": w.GetStartDate(), "end_date": w.GetEndDate()})
				} else {
					who := "(all)"
					if w.GetNavigatorCode() != "" {
						who = w.GetNavigatorCode()
					}
					fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", w.GetNumber(), w.GetLabel(), who, w.GetStartDate(), w.GetEndDate())
				}
			}
			if tok = resp.GetNextPageToken(); tok == "" {
				break
			}
		}
		if !*jsonOut {
			return tw.Flush()
		}
		return nil
	}
	return usagef("unknown admin wave subcommand %q", args[0])
}

func (a *adminCmd) redact(args []string) error {
	if len(args) == 0 {
		return usagef("admin redact needs add, remove, list, show, on, off, pattern add, pattern remove or pattern reset")
	}
	switch args[0] {
	case "add":
		fs := flag.NewFlagSet("admin redact add", flag.ContinueOnError)
		marker := fs.String("marker", "", "what replaces the term (default [name])")
		pos, err := parse(fs, args[1:])
		if err != nil {
			return err
		}
		if len(pos) != 1 {
			return usagef("admin redact add needs one term (quote a name of several words): admin redact add \"Jane Doe\" [--marker [place]]")
		}
		if _, err := a.svc.AddRedactionTerm(a.ctx, &diaryv1.AddRedactionTermRequest{Term: &diaryv1.RedactionTerm{Term: pos[0], Marker: *marker}}); err != nil {
			return rpcErr("add redaction term", err)
		}
		return nil
	case "remove":
		if len(args) != 2 {
			return usagef("admin redact remove needs one term")
		}
		resp, err := a.svc.RemoveRedactionTerm(a.ctx, &diaryv1.RemoveRedactionTermRequest{Term: args[1]})
		if err != nil {
			return rpcErr("remove redaction term", err)
		}
		if !resp.GetRemoved() {
			return fmt.Errorf("cannot remove redaction term: it is not on the list")
		}
		return nil
	case "list":
		fs := flag.NewFlagSet("admin redact list", flag.ContinueOnError)
		jsonOut := fs.Bool("json", false, "print JSON, one term per line")
		if _, err := parse(fs, args[1:]); err != nil {
			return err
		}
		tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
		if !*jsonOut {
			fmt.Fprintln(tw, "TERM\tMARKER")
		}
		for tok := ""; ; {
			resp, err := a.svc.ListRedactionTerms(a.ctx, &diaryv1.ListRedactionTermsRequest{PageSize: 500, PageToken: tok})
			if err != nil {
				return rpcErr("list redaction terms", err)
			}
			for _, t := range resp.GetTerms() {
				if *jsonOut {
					writeJSON(a.stdout, map[string]any{"term": t.GetTerm(), "marker": t.GetMarker()})
				} else {
					fmt.Fprintf(tw, "%s\t%s\n", t.GetTerm(), t.GetMarker())
				}
			}
			if tok = resp.GetNextPageToken(); tok == "" {
				break
			}
		}
		if !*jsonOut {
			return tw.Flush()
		}
		return nil
	case "show":
		resp, err := a.svc.GetRedaction(a.ctx, &diaryv1.GetRedactionRequest{})
		if err != nil {
			return rpcErr("show redaction", err)
		}
		r := resp.GetRedaction()
		state := "on"
		if !r.GetEnabled() {
			state = "OFF: research exports and pulls carry texts as written"
		}
		fmt.Fprintf(a.stdout, "De-identification: %s\nTerms on the list: %d\n", state, r.GetTerms())
		tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "PATTERN\tMARKER\tEXPRESSION")
		for _, p := range r.GetPatterns() {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", p.GetName(), p.GetMarker(), p.GetExpression())
		}
		return tw.Flush()
	case "on", "off":
		if len(args) != 1 {
			return usagef("admin redact %s takes no arguments", args[0])
		}
		return a.updateRedaction(func(r *diaryv1.UpdateRedactionRequest) error {
			r.Enabled = args[0] == "on"
			return nil
		})
	case "pattern":
		return a.redactPattern(args[1:])
	}
	return usagef("unknown admin redact subcommand %q", args[0])
}

func (a *adminCmd) redactPattern(args []string) error {
	if len(args) == 0 {
		return usagef("admin redact pattern needs add, remove or reset")
	}
	switch args[0] {
	case "add":
		fs := flag.NewFlagSet("admin redact pattern add", flag.ContinueOnError)
		name := fs.String("name", "", "the pattern's name, such as nhs-number")
		marker := fs.String("marker", "", "what replaces a match, such as [nhs]")
		expr := fs.String("regexp", "", "the regular expression (RE2 syntax)")
		if pos, err := parse(fs, args[1:]); err != nil {
			return err
		} else if len(pos) > 0 || *name == "" || *marker == "" || *expr == "" {
			return usagef("admin redact pattern add needs --name N --marker M --regexp RE")
		}
		return a.updateRedaction(func(r *diaryv1.UpdateRedactionRequest) error {
			for _, p := range r.Patterns {
				if p.GetName() == *name {
					p.Marker, p.Expression = *marker, *expr
					return nil
				}
			}
			r.Patterns = append(r.Patterns, &diaryv1.RedactionPattern{Name: *name, Marker: *marker, Expression: *expr})
			return nil
		})
	case "remove":
		if len(args) != 2 {
			return usagef("admin redact pattern remove needs the pattern's name")
		}
		return a.updateRedaction(func(r *diaryv1.UpdateRedactionRequest) error {
			n := len(r.Patterns)
			r.Patterns = slices.DeleteFunc(r.Patterns, func(p *diaryv1.RedactionPattern) bool { return p.GetName() == args[1] })
			if len(r.Patterns) == n {
				return fmt.Errorf("cannot remove redaction pattern: there is no pattern %q", args[1])
			}
			if len(r.Patterns) == 0 {
				return fmt.Errorf("cannot remove the last redaction pattern: an empty list means the defaults; turn redaction off with admin redact off instead")
			}
			return nil
		})
	case "reset":
		return a.updateRedaction(func(r *diaryv1.UpdateRedactionRequest) error {
			r.Patterns = nil
			return nil
		})
	}
	return usagef("unknown admin redact pattern subcommand %q", args[0])
}

// updateRedaction reads the setting, lets change edit it and writes it
// back.
func (a *adminCmd) updateRedaction(change func(*diaryv1.UpdateRedactionRequest) error) error {
	resp, err := a.svc.GetRedaction(a.ctx, &diaryv1.GetRedactionRequest{})
	if err != nil {
		return rpcErr("read redaction setting", err)
	}
	req := &diaryv1.UpdateRedactionRequest{Enabled: resp.GetRedaction().GetEnabled(), Patterns: resp.GetRedaction().GetPatterns()}
	if err := change(req); err != nil {
		return err
	}
	out, err := a.svc.UpdateRedaction(a.ctx, req)
	if err != nil {
		return rpcErr("change redaction setting", err)
	}
	state := "on"
	if !out.GetRedaction().GetEnabled() {
		state = "off"
	}
	fmt.Fprintf(a.stdout, "De-identification is %s, with %d patterns.\n", state, len(out.GetRedaction().GetPatterns()))
	return nil
}

func (a *adminCmd) erase(args []string) error {
	fs := flag.NewFlagSet("admin erase", flag.ContinueOnError)
	entry := fs.String("entry", "", "the id of the entry to erase")
	navigator := fs.String("navigator", "", "the study code of a navigator withdrawing from the study: erase all their entries")
	if pos, err := parse(fs, args); err != nil {
		return err
	} else if len(pos) > 0 || (*entry == "") == (*navigator == "") {
		return usagef("admin erase needs --entry ID or --navigator CODE")
	}
	if *entry != "" {
		resp, err := a.svc.EraseEntry(a.ctx, &diaryv1.EraseEntryRequest{EntryId: *entry})
		if err != nil {
			return rpcErr("erase entry", err)
		}
		if !resp.GetErased() {
			fmt.Fprintf(a.stderr, "Entry %s was already erased.\n", *entry)
		}
		return nil
	}
	resp, err := a.svc.EraseNavigator(a.ctx, &diaryv1.EraseNavigatorRequest{StudyCode: *navigator})
	if err != nil {
		return rpcErr("erase navigator", err)
	}
	fmt.Fprintf(a.stderr, "Erased %d entries of %s; their later pushes will be refused. Deactivate the account with \"diary admin user deactivate %s\" if it should stop syncing.\n",
		resp.GetEntriesErased(), *navigator, *navigator)
	return nil
}

func (a *adminCmd) audit(args []string) error {
	fs := flag.NewFlagSet("admin audit", flag.ContinueOnError)
	jsonOut := fs.Bool("json", false, "print JSON, one event per line")
	limit := fs.Int("limit", 0, "at most this many events, newest first (default: all)")
	if pos, err := parse(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return usagef("admin audit takes no arguments")
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
	if !*jsonOut {
		fmt.Fprintln(tw, "WHEN\tACTOR\tACTION\tSUBJECT\tDETAILS")
	}
	n := 0
	for tok := ""; ; {
		resp, err := a.svc.ListAuditEvents(a.ctx, &diaryv1.ListAuditEventsRequest{PageSize: 500, PageToken: tok})
		if err != nil {
			return rpcErr("read the audit log", err)
		}
		for _, e := range resp.GetEvents() {
			if *limit > 0 && n >= *limit {
				break
			}
			n++
			if *jsonOut {
				writeJSON(a.stdout, map[string]any{"id": e.GetId(), "at": e.GetAt().AsTime(), "actor": e.GetActor(), "action": e.GetAction(), "subject": e.GetSubject(), "details": e.GetDetails()})
				continue
			}
			var details []string
			for k, v := range e.GetDetails() {
				details = append(details, k+"="+v)
			}
			slices.Sort(details)
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", ts(e.GetAt()), e.GetActor(), e.GetAction(), e.GetSubject(), strings.Join(details, " "))
		}
		if tok = resp.GetNextPageToken(); tok == "" || (*limit > 0 && n >= *limit) {
			break
		}
	}
	if !*jsonOut {
		return tw.Flush()
	}
	return nil
}

// kindName names a device kind as lists show it.
func kindName(k diaryv1.DeviceKind) string {
	switch k {
	case diaryv1.DeviceKind_DEVICE_KIND_BROWSER:
		return "browser"
	case diaryv1.DeviceKind_DEVICE_KIND_APP:
		return "app"
	}
	return "unknown"
}
