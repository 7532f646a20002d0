package server

import (
	"github.com/diarysync/diarysync/proto/diary/v1/diaryv1connect"
)

// policy says, for every procedure, which roles may call it. It is the one
// place where access to RPCs is decided; a procedure missing from it is
// refused to everyone. Enroll needs no token: the one-time code is the
// credential. What a permitted caller may then see (their own entries,
// shared ones, research views) is decided by the store from the role.
var policy = map[string][]Role{
	diaryv1connect.DeviceServiceEnrollProcedure: nil, // public

	diaryv1connect.SyncServicePushProcedure:         {RoleNavigator, RoleSupervisor},
	diaryv1connect.SyncServicePullProcedure:         {RoleNavigator, RoleSupervisor, RoleResearcher},
	diaryv1connect.SyncServiceSubscribeProcedure:    {RoleNavigator, RoleSupervisor, RoleResearcher},
	diaryv1connect.SyncServiceGetStateHashProcedure: {RoleNavigator, RoleSupervisor, RoleResearcher},

	diaryv1connect.AdminServiceCreateUserProcedure:          {RoleAdmin},
	diaryv1connect.AdminServiceListUsersProcedure:           {RoleAdmin},
	diaryv1connect.AdminServiceDeactivateUserProcedure:      {RoleAdmin},
	diaryv1connect.AdminServiceAssignNavigatorProcedure:     {RoleAdmin},
	diaryv1connect.AdminServiceUnassignNavigatorProcedure:   {RoleAdmin},
	diaryv1connect.AdminServiceListAssignmentsProcedure:     {RoleAdmin},
	diaryv1connect.AdminServiceIssueEnrollmentCodeProcedure: {RoleAdmin},
	diaryv1connect.AdminServiceListDevicesProcedure:         {RoleAdmin},
	diaryv1connect.AdminServiceRevokeDeviceProcedure:        {RoleAdmin},
	diaryv1connect.AdminServiceCreateWaveProcedure:          {RoleAdmin},
	diaryv1connect.AdminServiceUpdateWaveProcedure:          {RoleAdmin},
	diaryv1connect.AdminServiceListWavesProcedure:           {RoleAdmin},
	diaryv1connect.AdminServiceEraseEntryProcedure:          {RoleAdmin},
	diaryv1connect.AdminServiceEraseNavigatorProcedure:      {RoleAdmin},
	diaryv1connect.AdminServiceListAuditEventsProcedure:     {RoleAdmin},

	diaryv1connect.ResearchServiceListWavesProcedure:  {RoleResearcher},
	diaryv1connect.ResearchServiceExportWaveProcedure: {RoleResearcher},
}

// publicProcedures need no token.
var publicProcedures = map[string]bool{
	diaryv1connect.DeviceServiceEnrollProcedure: true,
}

// allowed reports whether role may call procedure.
func allowed(procedure string, role Role) bool {
	for _, r := range policy[procedure] {
		if r == role {
			return true
		}
	}
	return false
}
