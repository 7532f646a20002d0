package mobile

import (
	"context"
	"strings"

	"github.com/diarysync/diarysync/client"
)

// Device states of Device.State and Status.DeviceState.
const (
	DevicePending = "pending" // waits for another of the person's devices to approve it
	DeviceActive  = "active"  // may do what the person's role allows
	DeviceRevoked = "revoked" // no longer works; its diary was wiped
)

// Device is one device of this person's account, as the device list
// shows it.
type Device struct {
	// ID is the device's id; ApproveDevice, DenyDevice and RevokeDevice
	// take it.
	ID string
	// Name is what the device was called when it enrolled.
	Name string
	// State is DevicePending, DeviceActive or DeviceRevoked.
	State string
	// This says it is the device this diary is on.
	This bool
	// EnrolledAtMillis is when it enrolled.
	EnrolledAtMillis int64
	// IssuedBy is the study code of whoever issued the code it enrolled
	// with, or "system".
	IssuedBy string
	// ApprovedAtMillis is when another device approved it; 0 if it never
	// waited for approval, or still waits.
	ApprovedAtMillis int64
	// ApprovedBy is the id of the device that approved it.
	ApprovedBy string
	// LastSyncMillis is when it last synced.
	LastSyncMillis int64
	// RevokedAtMillis is when it was revoked; 0 if it was not.
	RevokedAtMillis int64
	// Revocation says how it was revoked: self, user, admin, reset,
	// denied or deactivated; empty if it was not.
	Revocation string
	// RevokedBy is the study code of whoever revoked it.
	RevokedBy string
}

func deviceOf(d client.Device) *Device {
	out := &Device{ID: d.ID, Name: d.Name, State: d.State.String(), This: d.This, EnrolledAtMillis: millis(d.EnrolledAt),
		IssuedBy: d.IssuedBy, ApprovedAtMillis: millis(d.ApprovedAt), ApprovedBy: d.ApprovedBy,
		LastSyncMillis: millis(d.LastSyncAt), RevokedAtMillis: millis(d.RevokedAt), RevokedBy: d.RevokedBy}
	if !d.RevokedAt.IsZero() {
		out.Revocation = d.Revocation.String()
	}
	return out
}

// DevicePage is one page of the account's devices, newest enrolment
// first.
type DevicePage struct {
	devices []*Device
	// Next is the pageToken of the next page; empty on the last page.
	Next string
}

// Len returns the number of devices on the page.
func (p *DevicePage) Len() int { return len(p.devices) }

// Get returns the i-th device, or nil when i is out of range.
func (p *DevicePage) Get(i int) *Device {
	if i < 0 || i >= len(p.devices) {
		return nil
	}
	return p.devices[i]
}

// Devices returns a page of this account's devices (pageToken empty for
// the first). A device that waits for approval cannot list them.
func (m *Client) Devices(pageToken string) (*DevicePage, error) {
	ctx, done, err := m.begin()
	if err != nil {
		return nil, err
	}
	defer done()
	ds, next, err := m.c.Devices(ctx, pageToken)
	if err != nil {
		return nil, wrap(err)
	}
	p := &DevicePage{Next: next}
	for _, d := range ds {
		p.devices = append(p.devices, deviceOf(d))
	}
	return p, nil
}

// ApproveDevice lets a device of this account that waits for approval
// sync: it then receives the account's entries. Only an active device
// may approve.
func (m *Client) ApproveDevice(id string) (*Device, error) {
	return m.onDevice(id, m.c.ApproveDevice)
}

// DenyDevice refuses a device of this account that waits for approval:
// it is revoked, and what it wrote while waiting is erased.
func (m *Client) DenyDevice(id string) (*Device, error) {
	return m.onDevice(id, m.c.DenyDevice)
}

// RevokeDevice revokes a device of this account: another one (a lost
// phone), or this one, whose diary is then wiped at once.
func (m *Client) RevokeDevice(id string) (*Device, error) {
	return m.onDevice(id, m.c.RevokeDevice)
}

func (m *Client) onDevice(id string, f func(context.Context, string) (client.Device, error)) (*Device, error) {
	if strings.TrimSpace(id) == "" {
		return nil, &Error{Code: CodeInvalid, Message: "there is no device id"}
	}
	ctx, done, err := m.begin()
	if err != nil {
		return nil, err
	}
	defer done()
	d, err := f(ctx, strings.TrimSpace(id))
	if err != nil {
		return nil, wrap(err)
	}
	return deviceOf(d), nil
}
