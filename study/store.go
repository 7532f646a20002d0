package study

import (
	"context"
	"time"

	"github.com/diarysync/diarysync/syncengine"
)

// Store keeps a study: its people and devices, every entry's merged state
// and history, the feeds that order what each reader pulls, and the audit
// log. Every storage engine implements it; the server's handlers use
// nothing else.
//
// Errors are application errors (syncengine.Error, or a validation error)
// with the codes each method documents; any other error is EINTERNAL: a
// broken store, whose details are for the log and never for the caller.
// Every method that changes something does so in one transaction: it
// happens entirely or not at all. Methods that record an action in the
// audit log take its actor from the Identity in ctx (see NewContext), or
// "system".
type Store interface {
	// Now returns the store's clock, which stamps everything it records;
	// the server reports it to devices as its time.
	Now() time.Time

	// Authenticate returns the identity a device token belongs to, with
	// Pending set for a device that waits for approval. A malformed or
	// unknown token is EUNAUTHENTICATED; a revoked one, or one whose
	// user was deactivated, is EUNAUTHENTICATED as a *DeviceError that
	// says who revoked it and why (see CheckDevice).
	Authenticate(ctx context.Context, token string) (*Identity, error)
	// DeviceActive returns nil if the device is still enrolled (active
	// or pending) and its user active, and the error Authenticate would
	// give otherwise. Long-lived calls use it to notice a revocation
	// made after they authenticated.
	DeviceActive(ctx context.Context, device int64) error
	// TouchDevice records that the device synced now. The time may be
	// kept in memory and written later by FlushSyncTimes.
	TouchDevice(device int64)
	// FlushSyncTimes writes the sync times TouchDevice remembered.
	FlushSyncTimes(ctx context.Context) error

	// IssueEnrollmentCode issues a one-time enrolment code for the
	// active user with the given study code, working for ttl (0: the
	// default). The caller (the actor in ctx) is kept with the code as
	// its issuer. EINVALID for a ttl out of range or a malformed study
	// code, ENOTFOUND for an unknown user, ECONFLICT for a deactivated
	// one.
	IssueEnrollmentCode(ctx context.Context, studyCode string, ttl time.Duration) (code string, expires time.Time, err error)
	// Enroll exchanges a one-time code for a new device and its token.
	// The device starts in the state NewDeviceState gives; the
	// enrolment is audited with the code's issuer as the actor.
	// EINVALID for a device name that is not acceptable;
	// EUNAUTHENTICATED for a code that is malformed, unknown, used or
	// expired, or whose user was deactivated; ECONFLICT, with the code
	// left unused, when req.ForUser is set and the code is for someone
	// else.
	Enroll(ctx context.Context, req EnrollRequest) (*Enrollment, error)

	// ApproveDevice lets a pending device of the approver's user act:
	// what it wrote while pending reaches its readers now. Approving an
	// active device changes nothing and is not an error, so that a retry
	// is free. The approver must be an active device of the same user
	// (CheckApproval). EINVALID for a malformed id; ENOTFOUND for a
	// device that is not the approver's user's; ECONFLICT for a revoked
	// one (CheckApprovable), or an approver that is itself pending;
	// EUNAUTHENTICATED for an approver revoked since it authenticated.
	ApproveDevice(ctx context.Context, approver *Identity, publicID string) (*Device, *Wakeups, error)
	// DenyDevice refuses a pending device of the caller's user: it is
	// revoked (RevokedDenied) and the entries it wrote while pending are
	// erased. Denying a denied device is not an error. Errors as for
	// ApproveDevice, with ECONFLICT for a device that is approved or was
	// revoked otherwise (CheckDeniable).
	DenyDevice(ctx context.Context, who *Identity, publicID string) (*Device, error)
	// RevokeOwnDevice revokes a device of the caller's user, the calling
	// device included (RevokedSelf, else RevokedByUser). Revoking a
	// revoked device is not an error. Errors as for ApproveDevice,
	// without the one for a device that is not pending.
	RevokeOwnDevice(ctx context.Context, who *Identity, publicID string) (*Device, error)
	// DevicesAwaitingApproval returns up to max of the user's devices
	// that wait for approval, newest first, and how many there are.
	DevicesAwaitingApproval(ctx context.Context, userID int64, max int) ([]*Device, int, error)

	// TakeEnrollAttempt spends, atomically, one enrolment attempt of
	// the client address from (see AttemptLimit): the check and the
	// spending are one step, so parallel attempts, through any server
	// process sharing the store, cannot together exceed the limit.
	// ERATELIMIT, saying how long to wait, when none is left.
	TakeEnrollAttempt(ctx context.Context, from string) error
	// ReturnEnrollAttempt gives back an attempt taken for a call that
	// did not turn out to be a wrong guess (a valid code), so that only
	// wrong codes count against an address.
	ReturnEnrollAttempt(ctx context.Context, from string) error

	// UserByCode returns the user with the given study code (ignoring
	// case). EINVALID for a malformed code, ENOTFOUND for an unknown one.
	UserByCode(ctx context.Context, code string) (*User, error)
	// CreateUser adds a user. EINVALID for a malformed study code, role
	// or display name; EEXISTS when the study code is in use (ignoring
	// case).
	CreateUser(ctx context.Context, code string, role Role, displayName string) (*User, error)
	// ListUsers returns up to size users after the page token, in
	// study-code order, and the token of the next page ("" when there is
	// none). EINVALID for a token it did not issue.
	ListUsers(ctx context.Context, size uint32, token string) ([]*User, string, error)
	// DeactivateUser marks a user inactive and revokes all their
	// devices; it returns the user and how many devices it revoked.
	// ENOTFOUND for an unknown user; ECONFLICT for the last active
	// administrator.
	DeactivateUser(ctx context.Context, code string) (*User, int, error)
	// ResetUser, for a person who lost their only device, revokes every
	// device of the account (RevokedByReset), web console sessions
	// included (ended for EndReset), clears their console passphrase,
	// withdraws the codes issued for it and not used, and issues a
	// one-time code, working for ttl (0: the default), that enrols a
	// device (or a first console sign-in) without approval. It is
	// audited with the caller as the actor. EINVALID for a malformed
	// study code or a ttl out of range, ENOTFOUND for an unknown user,
	// ECONFLICT for a deactivated one.
	ResetUser(ctx context.Context, studyCode string, ttl time.Duration) (*Reset, error)
	// EnsureAdmin creates the first administrator (study code "ADMIN")
	// if the store has no administrator yet, and then issues a one-time
	// enrolment code for them. It reports whether it created the user.
	EnsureAdmin(ctx context.Context) (code string, created bool, err error)
	// AdminCode issues a one-time enrolment code for the first active
	// administrator, one that enrols without approval: it is asked for
	// at the server's console, by whoever holds the data. ENOTFOUND when
	// there is none.
	AdminCode(ctx context.Context) (string, error)

	// Assign lets the supervisor see what the navigator shares with
	// supervisors: every such entry enters the supervisor's feed. It
	// reports false if the assignment already existed, and the
	// supervisor's id. ENOTFOUND for an unknown user, EINVALID for users
	// of the wrong roles.
	Assign(ctx context.Context, supCode, navCode string) (created bool, supID int64, err error)
	// Unassign withdraws an assignment: every entry of the navigator
	// that the supervisor could see gets a removal notice in the
	// supervisor's feed. It reports false if there was no such
	// assignment. Errors as for Assign.
	Unassign(ctx context.Context, supCode, navCode string) (removed bool, supID int64, err error)
	// ListAssignments returns a page of assignments, optionally for one
	// supervisor. EINVALID for a bad token, ENOTFOUND for an unknown
	// supervisor.
	ListAssignments(ctx context.Context, size uint32, token, supCode string) ([]*Assignment, string, error)

	// ListDevices returns a page of devices, newest enrolment first,
	// optionally only one user's. EINVALID for a bad token, ENOTFOUND
	// for an unknown user.
	ListDevices(ctx context.Context, size uint32, token, studyCode string) ([]*Device, string, error)
	// RevokeDevice revokes a device, as an administrator
	// (RevokedByAdmin): its token stops working at once, and what it
	// wrote while pending, if it was, is erased. Revoking a revoked
	// device is not an error. EINVALID for a malformed id, ENOTFOUND for
	// an unknown one.
	RevokeDevice(ctx context.Context, publicID string) (*Device, error)

	// CreateWave defines a new study-wide wave or, with w.Navigator set,
	// a navigator's own dates for an existing wave (its label is the
	// wave's). EINVALID for a bad definition or a user who is not a
	// navigator; EEXISTS for a wave (or a navigator's dates for it)
	// already defined; ENOTFOUND for an unknown navigator, or own dates
	// for a wave that does not exist; ECONFLICT when the change would
	// make two waves overlap for some navigator (CheckWavePlan).
	CreateWave(ctx context.Context, w Wave) (*Wave, error)
	// UpdateWave replaces the label and window of a study-wide wave, or
	// a navigator's own dates for it. Errors as for CreateWave, with
	// ENOTFOUND for a definition that does not exist.
	UpdateWave(ctx context.Context, w Wave) (*Wave, error)
	// DeleteWaveDates removes a navigator's own dates for a wave, so that
	// the study-wide dates hold for them again. ENOTFOUND for an unknown
	// navigator or when they have no own dates for it; ECONFLICT when
	// the study-wide dates would overlap their other own dates.
	DeleteWaveDates(ctx context.Context, number uint32, navigator string) error
	// ListWaves returns a page of the study-wide waves in number order.
	// EINVALID for a bad token.
	ListWaves(ctx context.Context, size uint32, token string) ([]*Wave, string, error)
	// ListWaveDefinitions returns a page of every wave definition: each
	// study-wide wave followed by the navigators' own dates for it, in
	// study-code order (Navigator set, Label the wave's). EINVALID for a
	// bad token.
	ListWaveDefinitions(ctx context.Context, size uint32, token string) ([]*Wave, string, error)

	// Redaction returns the study's de-identification setting, with the
	// number of terms on its list.
	Redaction(ctx context.Context) (*Redaction, error)
	// SetRedaction replaces the setting's Enabled and Patterns (an empty
	// Patterns restores DefaultRedactPatterns) and records the change in
	// the audit log. Every entry the research team can see gets a new
	// research feed row in the same transaction, so that their replicas
	// pull the entries as the new setting shows them. EINVALID for a
	// pattern ValidateRedaction refuses.
	SetRedaction(ctx context.Context, r Redaction) (*Redaction, *Wakeups, error)
	// AddRedactTerm adds a term to the study's list, with the same feed
	// rows as SetRedaction. EINVALID for a term ValidateRedactTerm
	// refuses, EEXISTS for a term on the list already (ignoring case and
	// spacing), ETOOLARGE when the list holds MaxRedactTerms.
	AddRedactTerm(ctx context.Context, t RedactTerm) (*Wakeups, error)
	// RemoveRedactTerm removes a term (ignoring case and spacing), with
	// the same feed rows as SetRedaction. It reports false if the term
	// was not on the list.
	RemoveRedactTerm(ctx context.Context, term string) (bool, *Wakeups, error)
	// ListRedactTerms returns a page of the list in key order. EINVALID
	// for a bad token.
	ListRedactTerms(ctx context.Context, size uint32, token string) ([]*RedactTerm, string, error)

	// Push applies a batch of changes from the calling device in one
	// transaction and returns one result per change, and whom to wake.
	// Each change passes CheckIncoming and Decide, and is merged with
	// ApplyChange, whose returned change goes to the history; an entry
	// Decide holds back reaches no reader (no feed row, not in Pull, Head,
	// StateHash or exports) until its device is approved. It returns an error
	// only when the batch could not be committed at all, and then
	// nothing was written: ETOOLARGE for more than MaxPushChanges
	// changes.
	Push(ctx context.Context, who *Identity, in []Incoming) ([]ChangeResult, *Wakeups, error)
	// Pull returns the page after req.Cursor for the caller, read in one
	// snapshot, each entry as Reader.View shows it with req.MergedText. Memory and time are bounded by the page, whatever the
	// size of the store, except that req.CountRemaining asks for an exact
	// count of what waits (see PullRequest). EPERMISSION for a role that
	// has no entries to sync, EINVALID for a negative cursor, ECONFLICT
	// for a cursor ahead of the store's position.
	Pull(ctx context.Context, who *Identity, req PullRequest) (*PullPage, error)
	// Head returns the newest position the caller may see: the greatest
	// sequence number among the rows they pull. EPERMISSION as for Pull.
	Head(ctx context.Context, who *Identity) (int64, error)
	// StateHash computes, in one snapshot, the state hash of every entry
	// the caller may see, as Reader.View shows it with req.MergedText.
	// EPERMISSION as for Pull.
	StateHash(ctx context.Context, who *Identity, req StateHashRequest) (*StateHash, error)

	// Export reads one snapshot of what the research team may export
	// under req, de-identified with the study's redaction setting, and
	// calls write with its manifest and its records. Only entries shared
	// for research and neither deleted nor erased are exported (see
	// Classify). Before write is called the export is given an id and
	// the entries it holds are kept with their text hashes, so that a
	// later export can compare itself with it (req.Since). When write
	// returns nil the export is kept in the list of exports and recorded
	// in the audit log with its counts; an export that failed is
	// neither. EINVALID for a request CheckExportRequest refuses,
	// ENOTFOUND for an unknown wave, navigator or earlier export, or the
	// error write returns.
	Export(ctx context.Context, req ExportRequest, write func(Manifest, Records) error) error
	// ExportPreview returns the manifest an export of req would have now,
	// without its records: counts, wave definitions and settings (its
	// ExportID is 0, Since is nil and Redaction.Replacements is not
	// counted). Nothing is kept or recorded. Errors as for Export.
	ExportPreview(ctx context.Context, req ExportRequest) (*Manifest, error)
	// ListExports returns a page of the exports made, newest first, as
	// their manifests without per-entry lists. EINVALID for a bad token.
	ListExports(ctx context.Context, size uint32, token string) ([]*Manifest, string, error)

	// EraseEntry erases one entry: its state and history are deleted,
	// the id is kept so that later pushes for it are refused, and every
	// reader's feed gets a removal notice. It reports false if the entry
	// was already erased. ENOTFOUND for an entry the store never had.
	EraseEntry(ctx context.Context, id syncengine.EntryID) (bool, *Wakeups, error)
	// EraseNavigator erases every entry of a navigator and marks them
	// withdrawn, so that entries their devices still hold offline are
	// refused when pushed. It returns how many entries it erased now.
	// ENOTFOUND for an unknown user, EINVALID for one who is not a
	// navigator.
	EraseNavigator(ctx context.Context, code string) (int, *Wakeups, error)

	// ListAudit returns a page of the audit log, newest first. EINVALID
	// for a bad token.
	ListAudit(ctx context.Context, size uint32, token string) ([]*AuditEvent, string, error)
	// ListActivity returns a page of the audit events that concern the
	// user (their devices, codes, resets, assignments, erasures of their
	// entries, exports that held their entries), newest first. EINVALID
	// for a bad token.
	ListActivity(ctx context.Context, userID int64, size uint32, token string) ([]*AuditEvent, string, error)

	// QueryAudit returns a page of the audit log, newest first, that
	// passes the query's filters. EINVALID for a malformed filter or a
	// bad token.
	QueryAudit(ctx context.Context, q AuditQuery) ([]*AuditEvent, string, error)

	// MarkRead keeps a supervisor's read marks, each a last-writer-wins
	// register per (supervisor, entry) decided by DecideReadMark, in
	// one transaction, and returns one result per mark and whom to
	// wake. Each mark that changed what the supervisor holds puts the
	// entry in their feed again at a new position, so that their other
	// devices' next pull brings the new read state. ETOOLARGE for more
	// than MaxReadMarks marks; then nothing was written.
	MarkRead(ctx context.Context, who *Identity, marks []ReadMark) ([]ChangeResult, *Wakeups, error)
	// Inbox returns a page of the entries the calling supervisor may
	// see now, newest date first (then newest id), with their read
	// state, filtered by q. A page reads at most InboxScanLimit entries
	// to fill itself. EPERMISSION for a caller who is not a supervisor,
	// EINVALID for a malformed filter or a bad token.
	Inbox(ctx context.Context, who *Identity, q InboxQuery) (*InboxPage, error)
	// InboxEntry returns one entry as the calling supervisor may see it
	// now, with their read state. ENOTFOUND for an entry they may not
	// see (unknown, not shared with them, deleted, erased, another
	// supervisor's navigator), so that a guessed id reveals nothing;
	// EPERMISSION for a caller who is not a supervisor.
	InboxEntry(ctx context.Context, who *Identity, id syncengine.EntryID) (*InboxItem, error)
	// DeviceClock returns the greatest clock among the changes the store
	// keeps from the device, accepted or refused (0 if none), so that a
	// writer whose clock lives in memory (a console session) never
	// stamps a clock it used before, even after a restart.
	DeviceClock(ctx context.Context, device int64) (syncengine.Timestamp, error)

	// CodeUser returns the user a one-time enrolment code is for, if
	// the code may enrol now; it does not spend the code. Errors as for
	// Enroll.
	CodeUser(ctx context.Context, code string) (*User, error)
	// EnrollBrowser exchanges a one-time enrolment code for a web
	// console session (a device of kind KindBrowser that ends after
	// lifetime) and sets the person's console passphrase to the given
	// hash, replacing any. The session starts in the state
	// NewDeviceState gives, as a phone enrolled with the code would, and
	// the enrolment is audited with the code's issuer as the actor. The
	// code is spent only if everything succeeds. EPERMISSION for a
	// navigator's code (ErrNotConsoleRole); otherwise errors as for
	// Enroll.
	EnrollBrowser(ctx context.Context, code, passphraseHash, name string, lifetime time.Duration) (*Enrollment, error)
	// PassphraseHash returns the stored hash of the person's console
	// passphrase. ErrBadLogin for an unknown, deactivated or
	// navigator's study code, or one with no passphrase set, so that
	// the caller cannot tell them apart from a wrong passphrase.
	PassphraseHash(ctx context.Context, studyCode string) (string, error)
	// StartSession starts a web console session for the person, who
	// proved their passphrase against hash; it is active at once, since
	// the passphrase was set in a session that was approved or needed no
	// approval. ErrBadLogin when the
	// stored hash is no longer hash (the access was reset meanwhile) or
	// the account was deactivated; EINVALID for a bad name.
	StartSession(ctx context.Context, studyCode, passphraseHash, name string, lifetime time.Duration) (*Enrollment, error)
	// Session returns the web console session a token belongs to, ended
	// or not (see CheckSession). EUNAUTHENTICATED for a malformed or
	// unknown token, or an app's device token.
	Session(ctx context.Context, token string) (*Session, error)
	// TouchSession records that the session was used now.
	TouchSession(ctx context.Context, device int64) error
	// EndSession ends a session for reason (sign-out, expiry): its
	// token stops working at once. Ending an ended session is not an
	// error. EINVALID for an unknown reason, ENOTFOUND for an unknown
	// session.
	EndSession(ctx context.Context, device int64, reason SessionEnd) error
	// SpendLoginAttempt counts one sign-in attempt against each key as a
	// failure, in one transaction, unless LoginWait says one of them must
	// wait: then it changes nothing and returns ErrLoginWait. Counting
	// before the attempt is checked means parallel guesses cannot get
	// past the limit; RefundLoginAttempt takes it back on success.
	SpendLoginAttempt(ctx context.Context, keys []LoginKey) error
	// RefundLoginAttempt takes back one counted attempt of each key, or
	// with reset forgets all of the keys' failures.
	RefundLoginAttempt(ctx context.Context, keys []string, reset bool) error

	// SeedDemo creates, once, the demo study (DemoPeople, the demo
	// supervisor assigned to every demo navigator, DemoWaves around
	// today), and on every call issues a fresh one-time enrolment code
	// for each demo person still active. It reports whether it seeded
	// the study on this call.
	SeedDemo(ctx context.Context, today time.Time) ([]DemoUser, bool, error)

	// Close releases the store.
	Close() error
}

// CommitWatcher is implemented by a store that several server processes
// can share. The server wakes the Subscribe streams its own commits
// concern; a CommitWatcher also reports the commits other processes made,
// so that a stream on any process wakes for a commit made through any
// other. A store only one process can open (SQLite) does not implement
// it.
type CommitWatcher interface {
	// WatchCommits calls wake, until ctx ends, with the wake-ups of each
	// commit another process made, and with nil when commits may have
	// been missed (after the store lost and regained its connection) and
	// every stream must look again. It returns when ctx ends.
	WatchCommits(ctx context.Context, wake func(*Wakeups))
}
