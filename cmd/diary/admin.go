package main

import (
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/diarysync/diarysync/client"
	"github.com/diarysync/diarysync/client/operator"
	diaryv1 "github.com/diarysync/diarysync/proto/diary/v1"
	"github.com/diarysync/diarysync/proto/diary/v1/diaryv1connect"
	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// withAdmin opens the replica and runs fn with the admin service, which
// sends this device's token: the server refuses it to anyone but an
// administrator.
func (e *env) withAdmin(fn func(svc diaryv1connect.AdminServiceClient) error) error {
	return e.withClient(func(c *client.Client) error {
		svc, err := operator.Admin(c)
		if err != nil {
			return err
		}
		return fn(svc)
	})
}

// checkStudyCode refuses, as a usage mistake, a flag value that cannot be
// a study code.
func checkStudyCode(flagName, code string) error {
	if err := syncengine.ValidateStudyCode(code); err != nil {
		return usagef("%s %q: %s", flagName, code, syncengine.ErrorMessage(err))
	}
	return nil
}

// checkTTL refuses a code lifetime out of the range the server takes.
func checkTTL(ttl time.Duration) error {
	if _, err := study.CodeTTL(ttl); err != nil {
		return usagef("--ttl %s: %s", ttl, syncengine.ErrorMessage(err))
	}
	return nil
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

func adminUserAdd(e *env, args []string) error {
	fs := e.flags()
	role := fs.String("role", "", "navigator, supervisor, researcher or admin")
	code := fs.String("code", "", "study code, such as PN-D")
	name := fs.String("name", "", "display name (never shown to research)")
	if err := e.noArgs(fs, args); err != nil {
		return err
	}
	r, ok := map[string]diaryv1.Role{"navigator": diaryv1.Role_ROLE_NAVIGATOR, "supervisor": diaryv1.Role_ROLE_SUPERVISOR, "researcher": diaryv1.Role_ROLE_RESEARCHER, "admin": diaryv1.Role_ROLE_ADMIN}[strings.ToLower(*role)]
	if !ok {
		return usagef("--role must be navigator, supervisor, researcher or admin")
	}
	if *code == "" {
		return usagef("admin user add needs --code")
	}
	if err := checkStudyCode("--code", *code); err != nil {
		return err
	}
	if _, err := study.ValidateNewUser(*code, study.Role(r), *name); err != nil {
		return usagef("--name: %s", syncengine.ErrorMessage(err))
	}
	return e.withAdmin(func(svc diaryv1connect.AdminServiceClient) error {
		resp, err := svc.CreateUser(e.ctx, &diaryv1.CreateUserRequest{StudyCode: *code, Role: r, DisplayName: *name})
		if err != nil {
			return rpcErr("add user", err)
		}
		fmt.Fprintln(e.stdout, resp.GetUser().GetStudyCode())
		return nil
	})
}

func adminUserList(e *env, args []string) error {
	fs := e.flags()
	jsonOut := fs.Bool("json", false, "print JSON, one user per line")
	if err := e.noArgs(fs, args); err != nil {
		return err
	}
	return e.withAdmin(func(svc diaryv1connect.AdminServiceClient) error {
		tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
		if !*jsonOut {
			fmt.Fprintln(tw, "CODE\tROLE\tNAME\tACTIVE\tCREATED")
		}
		for tok := ""; ; {
			resp, err := svc.ListUsers(e.ctx, &diaryv1.ListUsersRequest{PageSize: 500, PageToken: tok})
			if err != nil {
				return rpcErr("list users", err)
			}
			for _, u := range resp.GetUsers() {
				role := strings.ToLower(strings.TrimPrefix(u.GetRole().String(), "ROLE_"))
				if *jsonOut {
					if err := writeJSON(e.stdout, map[string]any{"study_code": u.GetStudyCode(), "role": role, "display_name": u.GetDisplayName(), "active": u.GetActive(), "created_at": u.GetCreatedAt().AsTime()}); err != nil {
						return err
					}
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
	})
}

func adminUserDeactivate(e *env, args []string) error {
	fs := e.flags()
	code, err := e.oneArg(fs, args, "a study code")
	if err != nil {
		return err
	}
	if err := checkStudyCode("study code", code); err != nil {
		return err
	}
	return e.withAdmin(func(svc diaryv1connect.AdminServiceClient) error {
		resp, err := svc.DeactivateUser(e.ctx, &diaryv1.DeactivateUserRequest{StudyCode: code})
		if err != nil {
			return rpcErr("deactivate user", err)
		}
		fmt.Fprintf(e.stderr, "Deactivated %s; revoked %d device(s).\n", resp.GetUser().GetStudyCode(), resp.GetDevicesRevoked())
		return nil
	})
}

func adminUserReset(e *env, args []string) error {
	fs := e.flags()
	ttl := fs.Duration("ttl", 24*time.Hour, "how long the new code works (1m to 168h)")
	code, err := e.oneArg(fs, args, "a study code")
	if err != nil {
		return err
	}
	if err := checkStudyCode("study code", code); err != nil {
		return err
	}
	if err := checkTTL(*ttl); err != nil {
		return err
	}
	return e.withAdmin(func(svc diaryv1connect.AdminServiceClient) error {
		resp, err := svc.ResetUser(e.ctx, &diaryv1.ResetUserRequest{StudyCode: code, Ttl: durationpb.New(*ttl)})
		if err != nil {
			return rpcErr("reset the account", err)
		}
		fmt.Fprintf(e.stderr, "Reset %s: revoked %d device(s); each is told an administrator reset the account. The code below enrols one device without approval, until %s; the reset is in the audit log and in %s's activity.\n",
			resp.GetUser().GetStudyCode(), resp.GetDevicesRevoked(), ts(resp.GetExpiresAt()), resp.GetUser().GetStudyCode())
		fmt.Fprintln(e.stdout, resp.GetCode())
		return nil
	})
}

func adminAssign(e *env, args []string, assign bool) error {
	fs := e.flags()
	sup := fs.String("supervisor", "", "supervisor's study code")
	nav := fs.String("navigator", "", "navigator's study code")
	if err := e.noArgs(fs, args); err != nil {
		return err
	}
	if *sup == "" || *nav == "" {
		return usagef("needs --supervisor CODE --navigator CODE")
	}
	if err := checkStudyCode("--supervisor", *sup); err != nil {
		return err
	}
	if err := checkStudyCode("--navigator", *nav); err != nil {
		return err
	}
	return e.withAdmin(func(svc diaryv1connect.AdminServiceClient) error {
		if assign {
			resp, err := svc.AssignNavigator(e.ctx, &diaryv1.AssignNavigatorRequest{SupervisorCode: *sup, NavigatorCode: *nav})
			if err != nil {
				return rpcErr("assign", err)
			}
			if !resp.GetCreated() {
				fmt.Fprintf(e.stderr, "%s was already assigned to %s.\n", *nav, *sup)
			}
			return nil
		}
		resp, err := svc.UnassignNavigator(e.ctx, &diaryv1.UnassignNavigatorRequest{SupervisorCode: *sup, NavigatorCode: *nav})
		if err != nil {
			return rpcErr("unassign", err)
		}
		if !resp.GetRemoved() {
			fmt.Fprintf(e.stderr, "%s was not assigned to %s.\n", *nav, *sup)
		}
		return nil
	})
}

func adminAssignments(e *env, args []string) error {
	fs := e.flags()
	sup := fs.String("supervisor", "", "only this supervisor's")
	jsonOut := fs.Bool("json", false, "print JSON, one per line")
	if err := e.noArgs(fs, args); err != nil {
		return err
	}
	if *sup != "" {
		if err := checkStudyCode("--supervisor", *sup); err != nil {
			return err
		}
	}
	return e.withAdmin(func(svc diaryv1connect.AdminServiceClient) error {
		tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
		if !*jsonOut {
			fmt.Fprintln(tw, "SUPERVISOR\tNAVIGATOR\tSINCE")
		}
		for tok := ""; ; {
			resp, err := svc.ListAssignments(e.ctx, &diaryv1.ListAssignmentsRequest{PageSize: 500, PageToken: tok, SupervisorCode: *sup})
			if err != nil {
				return rpcErr("list assignments", err)
			}
			for _, as := range resp.GetAssignments() {
				if *jsonOut {
					if err := writeJSON(e.stdout, map[string]any{"supervisor": as.GetSupervisorCode(), "navigator": as.GetNavigatorCode(), "created_at": as.GetCreatedAt().AsTime()}); err != nil {
						return err
					}
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
	})
}

func adminCode(e *env, args []string) error {
	fs := e.flags()
	user := fs.String("user", "", "the study code of the person enrolling")
	ttl := fs.Duration("ttl", 24*time.Hour, "how long the code works (1m to 168h)")
	if err := e.noArgs(fs, args); err != nil {
		return err
	}
	if *user == "" {
		return usagef("admin code needs --user CODE")
	}
	if err := checkStudyCode("--user", *user); err != nil {
		return err
	}
	if err := checkTTL(*ttl); err != nil {
		return err
	}
	return e.withAdmin(func(svc diaryv1connect.AdminServiceClient) error {
		resp, err := svc.IssueEnrollmentCode(e.ctx, &diaryv1.IssueEnrollmentCodeRequest{StudyCode: *user, Ttl: durationpb.New(*ttl)})
		if err != nil {
			return rpcErr("issue a code", err)
		}
		fmt.Fprintln(e.stdout, resp.GetCode())
		return nil
	})
}

func adminDeviceList(e *env, args []string) error {
	fs := e.flags()
	user := fs.String("user", "", "only this user's devices")
	jsonOut := fs.Bool("json", false, "print JSON, one device per line")
	if err := e.noArgs(fs, args); err != nil {
		return err
	}
	if *user != "" {
		if err := checkStudyCode("--user", *user); err != nil {
			return err
		}
	}
	return e.withAdmin(func(svc diaryv1connect.AdminServiceClient) error {
		tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
		if !*jsonOut {
			fmt.Fprintln(tw, "DEVICE\tUSER\tKIND\tNAME\tSTATE\tENROLLED\tCODE FROM\tLAST SYNC\tREVOKED")
		}
		for tok := ""; ; {
			resp, err := svc.ListDevices(e.ctx, &diaryv1.ListDevicesRequest{PageSize: 500, PageToken: tok, StudyCode: *user})
			if err != nil {
				return rpcErr("list devices", err)
			}
			for _, d := range resp.GetDevices() {
				state := strings.ToLower(strings.TrimPrefix(d.GetState().String(), "DEVICE_STATE_"))
				if *jsonOut {
					m := map[string]any{"device_id": d.GetDeviceId(), "study_code": d.GetStudyCode(), "name": d.GetName(), "kind": kindName(d.GetKind()), "state": state, "issued_by": d.GetIssuedBy(),
						"enrolled_at": d.GetEnrolledAt().AsTime(), "last_sync_at": nil, "revoked_at": nil, "revoked_by": d.GetRevokedBy()}
					if d.GetLastSyncAt() != nil {
						m["last_sync_at"] = d.GetLastSyncAt().AsTime()
					}
					if d.GetRevokedAt() != nil {
						m["revoked_at"] = d.GetRevokedAt().AsTime()
						m["revocation"] = strings.ToLower(strings.TrimPrefix(d.GetRevocation().String(), "REVOCATION_REASON_"))
					}
					if err := writeJSON(e.stdout, m); err != nil {
						return err
					}
				} else {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.GetDeviceId(), d.GetStudyCode(), kindName(d.GetKind()), d.GetName(), state, ts(d.GetEnrolledAt()), d.GetIssuedBy(), ts(d.GetLastSyncAt()), ts(d.GetRevokedAt()))
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
	})
}

func adminDeviceRevoke(e *env, args []string) error {
	fs := e.flags()
	id, err := e.oneArg(fs, args, "a device id")
	if err != nil {
		return err
	}
	return e.withAdmin(func(svc diaryv1connect.AdminServiceClient) error {
		if _, err := svc.RevokeDevice(e.ctx, &diaryv1.RevokeDeviceRequest{DeviceId: id}); err != nil {
			return rpcErr("revoke device", err)
		}
		return nil
	})
}

func adminWave(e *env, args []string, add bool) error {
	fs := e.flags()
	number := fs.Uint("number", 0, "wave number, from 1")
	label := fs.String("label", "", "label, such as Baseline (study-wide waves only)")
	from := fs.String("from", "", "first day, YYYY-MM-DD")
	to := fs.String("to", "", "last day, YYYY-MM-DD")
	navigator := fs.String("navigator", "", "give this navigator (study code) their own dates for the wave")
	if err := e.noArgs(fs, args); err != nil {
		return err
	}
	verb := "edit"
	if add {
		verb = "add"
	}
	if *number == 0 || (*label == "" && *navigator == "") || *from == "" || *to == "" {
		return usagef("admin wave %s needs --number N --label L --from DATE --to DATE, or --number N --navigator CODE --from DATE --to DATE", verb)
	}
	w := study.Wave{Number: uint32(min(*number, 1<<32-1)), Label: *label, Start: *from, End: *to, Navigator: *navigator}
	if err := study.ValidateWave(&w); err != nil {
		return usagef("%s", syncengine.ErrorMessage(err))
	}
	return e.withAdmin(func(svc diaryv1connect.AdminServiceClient) error {
		pw := &diaryv1.Wave{Number: w.Number, Label: w.Label, StartDate: w.Start, EndDate: w.End, NavigatorCode: w.Navigator}
		var err error
		if add {
			_, err = svc.CreateWave(e.ctx, &diaryv1.CreateWaveRequest{Wave: pw})
		} else {
			_, err = svc.UpdateWave(e.ctx, &diaryv1.UpdateWaveRequest{Wave: pw})
		}
		if err != nil {
			return rpcErr(verb+" wave", err)
		}
		fmt.Fprintln(e.stdout, pw.GetNumber())
		return nil
	})
}

func adminWaveRemove(e *env, args []string) error {
	fs := e.flags()
	number := fs.Uint("number", 0, "wave number")
	navigator := fs.String("navigator", "", "the navigator whose own dates to remove")
	if err := e.noArgs(fs, args); err != nil {
		return err
	}
	if *number == 0 || *navigator == "" {
		return usagef("admin wave remove needs --number N --navigator CODE: it removes a navigator's own dates (study-wide waves stay)")
	}
	if *number > study.MaxWaveNumber {
		return usagef("--number must be from 1 to %d", study.MaxWaveNumber)
	}
	if err := checkStudyCode("--navigator", *navigator); err != nil {
		return err
	}
	return e.withAdmin(func(svc diaryv1connect.AdminServiceClient) error {
		if _, err := svc.DeleteWaveDates(e.ctx, &diaryv1.DeleteWaveDatesRequest{Number: uint32(*number), NavigatorCode: *navigator}); err != nil {
			return rpcErr("remove wave dates", err)
		}
		return nil
	})
}

func adminWaveList(e *env, args []string) error {
	fs := e.flags()
	jsonOut := fs.Bool("json", false, "print JSON, one wave definition per line")
	if err := e.noArgs(fs, args); err != nil {
		return err
	}
	return e.withAdmin(func(svc diaryv1connect.AdminServiceClient) error {
		tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
		if !*jsonOut {
			fmt.Fprintln(tw, "WAVE\tLABEL\tNAVIGATOR\tFROM\tTO")
		}
		for tok := ""; ; {
			resp, err := svc.ListWaves(e.ctx, &diaryv1.ListWavesRequest{PageSize: 500, PageToken: tok, IncludeNavigatorDates: true})
			if err != nil {
				return rpcErr("list waves", err)
			}
			for _, w := range resp.GetWaves() {
				if *jsonOut {
					if err := writeJSON(e.stdout, map[string]any{"number": w.GetNumber(), "label": w.GetLabel(), "navigator": w.GetNavigatorCode(), "start_date": w.GetStartDate(), "end_date": w.GetEndDate()}); err != nil {
						return err
					}
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
	})
}

func adminRedactAdd(e *env, args []string) error {
	fs := e.flags()
	marker := fs.String("marker", "", "what replaces the term (default [name])")
	pos, err := e.parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("admin redact add needs one term (quote a name of several words): admin redact add \"Jane Doe\" [--marker [place]]")
	}
	return e.withAdmin(func(svc diaryv1connect.AdminServiceClient) error {
		if _, err := svc.AddRedactionTerm(e.ctx, &diaryv1.AddRedactionTermRequest{Term: &diaryv1.RedactionTerm{Term: pos[0], Marker: *marker}}); err != nil {
			return rpcErr("add redaction term", err)
		}
		return nil
	})
}

func adminRedactRemove(e *env, args []string) error {
	pos, err := e.parse(e.flags(), args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("admin redact remove needs one term")
	}
	return e.withAdmin(func(svc diaryv1connect.AdminServiceClient) error {
		resp, err := svc.RemoveRedactionTerm(e.ctx, &diaryv1.RemoveRedactionTermRequest{Term: pos[0]})
		if err != nil {
			return rpcErr("remove redaction term", err)
		}
		if !resp.GetRemoved() {
			return fmt.Errorf("cannot remove redaction term: it is not on the list")
		}
		return nil
	})
}

func adminRedactList(e *env, args []string) error {
	fs := e.flags()
	jsonOut := fs.Bool("json", false, "print JSON, one term per line")
	if err := e.noArgs(fs, args); err != nil {
		return err
	}
	return e.withAdmin(func(svc diaryv1connect.AdminServiceClient) error {
		tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
		if !*jsonOut {
			fmt.Fprintln(tw, "TERM\tMARKER")
		}
		for tok := ""; ; {
			resp, err := svc.ListRedactionTerms(e.ctx, &diaryv1.ListRedactionTermsRequest{PageSize: 500, PageToken: tok})
			if err != nil {
				return rpcErr("list redaction terms", err)
			}
			for _, t := range resp.GetTerms() {
				if *jsonOut {
					if err := writeJSON(e.stdout, map[string]any{"term": t.GetTerm(), "marker": t.GetMarker()}); err != nil {
						return err
					}
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
	})
}

func adminRedactShow(e *env, args []string) error {
	if err := e.noArgs(e.flags(), args); err != nil {
		return err
	}
	return e.withAdmin(func(svc diaryv1connect.AdminServiceClient) error {
		resp, err := svc.GetRedaction(e.ctx, &diaryv1.GetRedactionRequest{})
		if err != nil {
			return rpcErr("show redaction", err)
		}
		r := resp.GetRedaction()
		state := "on"
		if !r.GetEnabled() {
			state = "OFF: research exports and pulls carry texts as written"
		}
		fmt.Fprintf(e.stdout, "De-identification: %s\nTerms on the list: %d\n", state, r.GetTerms())
		tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "PATTERN\tMARKER\tEXPRESSION")
		for _, p := range r.GetPatterns() {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", p.GetName(), p.GetMarker(), p.GetExpression())
		}
		return tw.Flush()
	})
}

func adminRedactSwitch(e *env, args []string, on bool) error {
	if err := e.noArgs(e.flags(), args); err != nil {
		return err
	}
	return e.updateRedaction(func(r *diaryv1.UpdateRedactionRequest) error {
		r.Enabled = on
		return nil
	})
}

func adminRedactPatternAdd(e *env, args []string) error {
	fs := e.flags()
	name := fs.String("name", "", "the pattern's name, such as nhs-number")
	marker := fs.String("marker", "", "what replaces a match, such as [nhs]")
	expr := fs.String("regexp", "", "the regular expression (RE2 syntax)")
	if err := e.noArgs(fs, args); err != nil {
		return err
	}
	if *name == "" || *marker == "" || *expr == "" {
		return usagef("admin redact pattern add needs --name N --marker M --regexp RE")
	}
	return e.updateRedaction(func(r *diaryv1.UpdateRedactionRequest) error {
		for _, p := range r.Patterns {
			if p.GetName() == *name {
				p.Marker, p.Expression = *marker, *expr
				return nil
			}
		}
		r.Patterns = append(r.Patterns, &diaryv1.RedactionPattern{Name: *name, Marker: *marker, Expression: *expr})
		return nil
	})
}

func adminRedactPatternRemove(e *env, args []string) error {
	pos, err := e.parse(e.flags(), args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("admin redact pattern remove needs the pattern's name")
	}
	return e.updateRedaction(func(r *diaryv1.UpdateRedactionRequest) error {
		n := len(r.Patterns)
		r.Patterns = slices.DeleteFunc(r.Patterns, func(p *diaryv1.RedactionPattern) bool { return p.GetName() == pos[0] })
		if len(r.Patterns) == n {
			return fmt.Errorf("cannot remove redaction pattern: there is no pattern %q", pos[0])
		}
		if len(r.Patterns) == 0 {
			return fmt.Errorf("cannot remove the last redaction pattern: an empty list means the defaults; turn redaction off with admin redact off instead")
		}
		return nil
	})
}

func adminRedactPatternReset(e *env, args []string) error {
	if err := e.noArgs(e.flags(), args); err != nil {
		return err
	}
	return e.updateRedaction(func(r *diaryv1.UpdateRedactionRequest) error {
		r.Patterns = nil
		return nil
	})
}

// updateRedaction reads the setting, lets change edit it and writes it
// back.
func (e *env) updateRedaction(change func(*diaryv1.UpdateRedactionRequest) error) error {
	return e.withAdmin(func(svc diaryv1connect.AdminServiceClient) error {
		resp, err := svc.GetRedaction(e.ctx, &diaryv1.GetRedactionRequest{})
		if err != nil {
			return rpcErr("read redaction setting", err)
		}
		req := &diaryv1.UpdateRedactionRequest{Enabled: resp.GetRedaction().GetEnabled(), Patterns: resp.GetRedaction().GetPatterns()}
		if err := change(req); err != nil {
			return err
		}
		out, err := svc.UpdateRedaction(e.ctx, req)
		if err != nil {
			return rpcErr("change redaction setting", err)
		}
		state := "on"
		if !out.GetRedaction().GetEnabled() {
			state = "off"
		}
		fmt.Fprintf(e.stdout, "De-identification is %s, with %d patterns.\n", state, len(out.GetRedaction().GetPatterns()))
		return nil
	})
}

func adminErase(e *env, args []string) error {
	fs := e.flags()
	entry := fs.String("entry", "", "the id of the entry to erase")
	navigator := fs.String("navigator", "", "the study code of a navigator withdrawing from the study: erase all their entries")
	if err := e.noArgs(fs, args); err != nil {
		return err
	}
	if (*entry == "") == (*navigator == "") {
		return usagef("admin erase needs --entry ID or --navigator CODE")
	}
	if *entry != "" {
		if _, err := syncengine.ParseEntryID(*entry); err != nil {
			return usagef("--entry %q is not an entry id (a full one, as \"diary list --json\" shows)", *entry)
		}
	} else if err := checkStudyCode("--navigator", *navigator); err != nil {
		return err
	}
	return e.withAdmin(func(svc diaryv1connect.AdminServiceClient) error {
		if *entry != "" {
			resp, err := svc.EraseEntry(e.ctx, &diaryv1.EraseEntryRequest{EntryId: *entry})
			if err != nil {
				return rpcErr("erase entry", err)
			}
			if !resp.GetErased() {
				fmt.Fprintf(e.stderr, "Entry %s was already erased.\n", *entry)
			}
			return nil
		}
		resp, err := svc.EraseNavigator(e.ctx, &diaryv1.EraseNavigatorRequest{StudyCode: *navigator})
		if err != nil {
			return rpcErr("erase navigator", err)
		}
		fmt.Fprintf(e.stderr, "Erased %d entries of %s; their later pushes will be refused. Deactivate the account with \"diary admin user deactivate %s\" if it should stop syncing.\n",
			resp.GetEntriesErased(), *navigator, *navigator)
		return nil
	})
}

func adminAudit(e *env, args []string) error {
	fs := e.flags()
	jsonOut := fs.Bool("json", false, "print JSON, one event per line")
	limit := fs.Int("limit", 0, "at most this many events, newest first (default: all)")
	if err := e.noArgs(fs, args); err != nil {
		return err
	}
	if *limit < 0 {
		return usagef("--limit must not be negative")
	}
	return e.withAdmin(func(svc diaryv1connect.AdminServiceClient) error {
		tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
		if !*jsonOut {
			fmt.Fprintln(tw, "WHEN\tACTOR\tACTION\tSUBJECT\tDETAILS")
		}
		n := 0
		for tok := ""; ; {
			resp, err := svc.ListAuditEvents(e.ctx, &diaryv1.ListAuditEventsRequest{PageSize: 500, PageToken: tok})
			if err != nil {
				return rpcErr("read the audit log", err)
			}
			for _, ev := range resp.GetEvents() {
				if *limit > 0 && n >= *limit {
					break
				}
				n++
				if *jsonOut {
					if err := writeJSON(e.stdout, map[string]any{"id": ev.GetId(), "at": ev.GetAt().AsTime(), "actor": ev.GetActor(), "action": ev.GetAction(), "subject": ev.GetSubject(), "details": ev.GetDetails()}); err != nil {
						return err
					}
					continue
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", ts(ev.GetAt()), ev.GetActor(), ev.GetAction(), ev.GetSubject(), details(ev.GetDetails()))
			}
			if tok = resp.GetNextPageToken(); tok == "" || (*limit > 0 && n >= *limit) {
				break
			}
		}
		if !*jsonOut {
			return tw.Flush()
		}
		return nil
	})
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
