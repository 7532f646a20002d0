package server

import (
	"github.com/diarysync/diarysync/proto/diary/v1/diaryv1connect"
	"github.com/diarysync/diarysync/study"
)

// policy says, for every procedure, which roles may call it. It is the one
// place where access to RPCs is decided; a procedure missing from it is
// refused to everyone. Enroll needs no token: the one-time code is the
// credential. What a permitted caller may then see (their own entries,
// shared ones, research views) is decided by the store from the role.
var policy = map[string][]study.Role{
	diaryv1connect.DeviceServiceEnrollProcedure: nil, // public

	// Every person manages the devices of their own account and sees
	// what was done with it.
	diaryv1connect.DeviceServiceListMyDevicesProcedure:  allRoles,
	diaryv1connect.DeviceServiceApproveDeviceProcedure:  allRoles,
	diaryv1connect.DeviceServiceDenyDeviceProcedure:     allRoles,
	diaryv1connect.DeviceServiceRevokeMyDeviceProcedure: allRoles,
	diaryv1connect.DeviceServiceListMyActivityProcedure: allRoles,

	diaryv1connect.SyncServicePushProcedure:         {study.RoleNavigator, study.RoleSupervisor},
	diaryv1connect.SyncServicePullProcedure:         {study.RoleNavigator, study.RoleSupervisor, study.RoleResearcher},
	diaryv1connect.SyncServiceSubscribeProcedure:    {study.RoleNavigator, study.RoleSupervisor, study.RoleResearcher},
	diaryv1connect.SyncServiceGetStateHashProcedure: {study.RoleNavigator, study.RoleSupervisor, study.RoleResearcher},
	diaryv1connect.SyncServiceMarkReadProcedure:     {study.RoleSupervisor},

	diaryv1connect.AdminServiceCreateUserProcedure:          {study.RoleAdmin},
	diaryv1connect.AdminServiceListUsersProcedure:           {study.RoleAdmin},
	diaryv1connect.AdminServiceDeactivateUserProcedure:      {study.RoleAdmin},
	diaryv1connect.AdminServiceAssignNavigatorProcedure:     {study.RoleAdmin},
	diaryv1connect.AdminServiceUnassignNavigatorProcedure:   {study.RoleAdmin},
	diaryv1connect.AdminServiceListAssignmentsProcedure:     {study.RoleAdmin},
	diaryv1connect.AdminServiceIssueEnrollmentCodeProcedure: {study.RoleAdmin},
	diaryv1connect.AdminServiceListDevicesProcedure:         {study.RoleAdmin},
	diaryv1connect.AdminServiceRevokeDeviceProcedure:        {study.RoleAdmin},
	diaryv1connect.AdminServiceCreateWaveProcedure:          {study.RoleAdmin},
	diaryv1connect.AdminServiceUpdateWaveProcedure:          {study.RoleAdmin},
	diaryv1connect.AdminServiceListWavesProcedure:           {study.RoleAdmin},
	diaryv1connect.AdminServiceDeleteWaveDatesProcedure:     {study.RoleAdmin},
	diaryv1connect.AdminServiceGetRedactionProcedure:        {study.RoleAdmin},
	diaryv1connect.AdminServiceUpdateRedactionProcedure:     {study.RoleAdmin},
	diaryv1connect.AdminServiceAddRedactionTermProcedure:    {study.RoleAdmin},
	diaryv1connect.AdminServiceRemoveRedactionTermProcedure: {study.RoleAdmin},
	diaryv1connect.AdminServiceListRedactionTermsProcedure:  {study.RoleAdmin},
	diaryv1connect.AdminServiceEraseEntryProcedure:          {study.RoleAdmin},
	diaryv1connect.AdminServiceEraseNavigatorProcedure:      {study.RoleAdmin},
	diaryv1connect.AdminServiceListAuditEventsProcedure:     {study.RoleAdmin},
	diaryv1connect.AdminServiceResetUserProcedure:           {study.RoleAdmin},

	diaryv1connect.ResearchServiceListWavesProcedure:     {study.RoleResearcher},
	diaryv1connect.ResearchServiceExportWaveProcedure:    {study.RoleResearcher},
	diaryv1connect.ResearchServicePreviewExportProcedure: {study.RoleResearcher},
	diaryv1connect.ResearchServiceListExportsProcedure:   {study.RoleResearcher},
}

var allRoles = []study.Role{study.RoleNavigator, study.RoleSupervisor, study.RoleResearcher, study.RoleAdmin}

// operations says what a procedure does for the rules that depend on the
// calling device's state (study.CheckOperation): a device waiting for
// approval may push and do nothing else. Every procedure not named here
// is study.OpOther.
var operations = map[string]study.Operation{
	diaryv1connect.SyncServicePushProcedure: study.OpPush,
}

// publicProcedures need no token.
var publicProcedures = map[string]bool{
	diaryv1connect.DeviceServiceEnrollProcedure: true,
}

// allowed reports whether role may call procedure.
func allowed(procedure string, role study.Role) bool {
	for _, r := range policy[procedure] {
		if r == role {
			return true
		}
	}
	return false
}
