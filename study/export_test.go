package study

import (
	"testing"

	"github.com/diarysync/diarysync/syncengine"
)

func TestClassify(t *testing.T) {
	plan := testPlan()
	for _, tc := range []struct {
		name            string
		req             ExportRequest
		code, date      string
		shared, deleted bool
		wave            uint32
		want            Exclusion
	}{
		{"Included", ExportRequest{}, "PN-A", "2026-04-02", true, false, 2, Included},
		{"IncludedOwnDates", ExportRequest{Wave: 2}, "PN-B", "2026-07-10", true, false, 2, Included},
		{"OtherWaveForNavigator", ExportRequest{Wave: 3}, "PN-B", "2026-07-10", true, false, 2, OutOfScope},
		{"NotShared", ExportRequest{Wave: 2}, "PN-A", "2026-04-02", false, false, 2, ExcludedNotShared},
		{"Deleted", ExportRequest{}, "PN-A", "2026-04-02", true, true, 2, ExcludedDeleted},
		{"NoWaveAllWaves", ExportRequest{}, "PN-B", "2026-04-02", true, false, 0, ExcludedNoWave},
		{"NoWaveOneWave", ExportRequest{Wave: 1}, "PN-B", "2026-04-02", true, false, 0, OutOfScope},
		{"NoWaveNotShared", ExportRequest{}, "PN-B", "2026-04-02", false, false, 0, OutOfScope},
		{"OtherNavigator", ExportRequest{Navigator: "pn-b"}, "PN-A", "2026-04-02", true, false, 0, OutOfScope},
		{"Navigator", ExportRequest{Navigator: "pn-a"}, "PN-A", "2026-04-02", true, false, 2, Included},
		{"BeforeFrom", ExportRequest{From: "2026-04-03"}, "PN-A", "2026-04-02", true, false, 0, OutOfScope},
		{"AfterTo", ExportRequest{To: "2026-04-01"}, "PN-A", "2026-04-02", true, false, 0, OutOfScope},
		{"OnTo", ExportRequest{From: "2026-04-02", To: "2026-04-02"}, "PN-A", "2026-04-02", true, false, 2, Included},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, got := Classify(&tc.req, plan, tc.code, tc.date, tc.shared, tc.deleted)
			if got != tc.want || (tc.wave != 0 && w.Number != tc.wave) {
				t.Fatalf("Classify = wave %d, %v; want wave %d, %v", w.Number, got, tc.wave, tc.want)
			}
		})
	}
}

func TestClassifyGone(t *testing.T) {
	if ClassifyGone(true, false, false) != SinceErased || ClassifyGone(false, false, false) != SinceWithdrawn ||
		ClassifyGone(false, true, true) != SinceWithdrawn || ClassifyGone(false, true, false) != SinceOutside {
		t.Fatal("ClassifyGone does not tell erased, withdrawn and outside apart")
	}
}

func TestCheckExportRequest(t *testing.T) {
	for _, tc := range []struct {
		name string
		req  ExportRequest
		ok   bool
	}{
		{"OK", ExportRequest{Format: FormatCSV, BOM: true, NoFormulaGuard: true, From: "2026-01-01", To: "2026-02-01", Navigator: "PN-A"}, true},
		{"OKQDC", ExportRequest{Format: FormatQDC}, true},
		{"ErrFormat", ExportRequest{Format: 9}, false},
		{"ErrBOMNotCSV", ExportRequest{Format: FormatJSONL, BOM: true}, false},
		{"ErrGuardNotCSV", ExportRequest{Format: FormatQDPX, NoFormulaGuard: true}, false},
		{"ErrDate", ExportRequest{Format: FormatCSV, From: "2026-02-30"}, false},
		{"ErrBackwards", ExportRequest{Format: FormatCSV, From: "2026-02-02", To: "2026-02-01"}, false},
		{"ErrNavigator", ExportRequest{Format: FormatCSV, Navigator: "PN A"}, false},
		{"ErrSince", ExportRequest{Format: FormatCSV, Since: -1}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckExportRequest(&tc.req)
			if (err == nil) != tc.ok || (err != nil && syncengine.ErrorCode(err) != syncengine.EINVALID) {
				t.Fatalf("CheckExportRequest = %v", err)
			}
		})
	}
}

func TestRevisions(t *testing.T) {
	const owner, sup = 1, 2
	body, title, fb := syncengine.FieldBody, syncengine.FieldTitle, syncengine.FieldFeedbackBody
	for _, tc := range []struct {
		name   string
		writes []HistoryWrite
		want   int
	}{
		{"none", nil, 0},
		{"one save of three fields", []HistoryWrite{
			{User: owner, Device: 10, Field: title, Write: 100, Received: 5},
			{User: owner, Device: 10, Field: body, Write: 100, Received: 5},
			{User: owner, Device: 10, Field: syncengine.FieldTag, Write: 100, Received: 5},
		}, 1},
		{"two saves in one push", []HistoryWrite{
			{User: owner, Device: 10, Field: body, Write: 100, Received: 5},
			{User: owner, Device: 10, Field: body, Write: 107, Received: 5},
		}, 2},
		{"same save clock on two devices", []HistoryWrite{
			{User: owner, Device: 10, Field: body, Write: 100, Received: 5},
			{User: owner, Device: 11, Field: body, Write: 100, Received: 6},
		}, 2},
		{"older app: one per push", []HistoryWrite{
			{User: owner, Device: 10, Field: title, Received: 5},
			{User: owner, Device: 10, Field: body, Received: 5},
			{User: owner, Device: 10, Field: body, Received: 9},
		}, 2},
		{"older app's push time equals a save clock", []HistoryWrite{
			{User: owner, Device: 10, Field: body, Received: 100},
			{User: owner, Device: 10, Field: body, Write: 100, Received: 7},
		}, 2},
		{"feedback and supervisors do not count", []HistoryWrite{
			{User: owner, Device: 10, Field: body, Write: 100, Received: 5},
			{User: sup, Device: 20, Field: fb, Write: 300, Received: 8},
			{User: sup, Device: 20, Field: syncengine.FieldFeedbackDeleted, Write: 301, Received: 9},
		}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Revisions(tc.writes, owner); got != tc.want {
				t.Fatalf("Revisions = %d, want %d", got, tc.want)
			}
		})
	}
}
