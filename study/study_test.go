package study

import (
	"context"
	"strings"
	"testing"

	"github.com/diarysync/diarysync/syncengine"
)

func TestRoles(t *testing.T) {
	for _, r := range []Role{RoleNavigator, RoleSupervisor, RoleResearcher, RoleAdmin} {
		got, err := ParseRole(strings.ToUpper(r.String()))
		if err != nil || got != r || !r.Valid() {
			t.Fatalf("ParseRole(%q) = %v, %v", r.String(), got, err)
		}
	}
	if _, err := ParseRole("owner"); syncengine.ErrorCode(err) != syncengine.EINVALID {
		t.Fatalf("got %v", err)
	}
	if Role(9).Valid() || Role(9).String() != "role(9)" {
		t.Fatal("an unknown role is valid or unnamed")
	}
}

func TestValidateNewUser(t *testing.T) {
	if name, err := ValidateNewUser("PN-A", RoleNavigator, "  Navigator A "); err != nil || name != "Navigator A" {
		t.Fatalf("got %q, %v", name, err)
	}
	for _, tc := range []struct {
		code string
		role Role
		name string
	}{{"", RoleNavigator, ""}, {"PN A", RoleNavigator, ""}, {"PN-A", 0, ""}, {"PN-A", RoleAdmin, strings.Repeat("n", MaxDisplayNameBytes+1)}} {
		if _, err := ValidateNewUser(tc.code, tc.role, tc.name); err == nil {
			t.Fatalf("%+v was accepted", tc)
		}
	}
}

func TestCheckDeactivate(t *testing.T) {
	admin := &User{StudyCode: "ADMIN", Role: RoleAdmin, Active: true}
	if err := CheckDeactivate(admin, 1); syncengine.ErrorCode(err) != syncengine.ECONFLICT {
		t.Fatalf("last administrator: got %v", err)
	}
	if err := CheckDeactivate(admin, 2); err != nil {
		t.Fatal(err)
	}
	if err := CheckDeactivate(&User{Role: RoleNavigator, Active: true}, 1); err != nil {
		t.Fatal(err)
	}
}

func TestCheckAssignment(t *testing.T) {
	sup, nav := &User{StudyCode: "SUP-1", Role: RoleSupervisor}, &User{StudyCode: "PN-A", Role: RoleNavigator}
	if err := CheckAssignment(sup, nav); err != nil {
		t.Fatal(err)
	}
	if err := CheckAssignment(nav, sup); syncengine.ErrorCode(err) != syncengine.EINVALID {
		t.Fatalf("got %v", err)
	}
	if err := CheckErasable(sup); syncengine.ErrorCode(err) != syncengine.EINVALID {
		t.Fatalf("got %v", err)
	}
}

func TestActor(t *testing.T) {
	ctx := context.Background()
	if a := ActorFrom(ctx); a != "system" {
		t.Fatalf("no identity: actor %q", a)
	}
	if a := ActorFrom(NewContext(ctx, navigator)); a != navigator.StudyCode || IdentityFrom(NewContext(ctx, navigator)) != navigator {
		t.Fatalf("actor %q", a)
	}
}

func TestPageTokens(t *testing.T) {
	for _, n := range []int64{0, 1, 1 << 40} {
		got, err := DecodeIntPageToken(EncodeIntPageToken(n))
		if err != nil || got != n {
			t.Fatalf("round trip of %d: %d, %v", n, got, err)
		}
	}
	if n, err := DecodeIntPageToken(""); n != 0 || err != nil {
		t.Fatalf("empty token: %d, %v", n, err)
	}
	for _, bad := range []string{"!!", EncodePageToken("x"), strings.Repeat("A", maxPageTokenBytes+4)} {
		if _, err := DecodeIntPageToken(bad); syncengine.ErrorCode(err) != syncengine.EINVALID {
			t.Fatalf("%q: got %v", bad, err)
		}
	}
	for n, want := range map[uint32]int{0: DefaultListPageSize, 7: 7, MaxListPageSize + 1: MaxListPageSize} {
		if got := ListPageSize(n); got != want {
			t.Fatalf("ListPageSize(%d) = %d", n, got)
		}
	}
}

func TestExportFormat(t *testing.T) {
	for _, f := range []ExportFormat{FormatCSV, FormatJSONL, FormatQDPX} {
		if err := CheckExportFormat(f); err != nil || f.String() == "" {
			t.Fatalf("%d: %v", f, err)
		}
	}
	if err := CheckExportFormat(0); syncengine.ErrorCode(err) != syncengine.EINVALID {
		t.Fatalf("got %v", err)
	}
	if WaveName(0) != "all" || WaveName(3) != "3" {
		t.Fatal("wave names")
	}
}
