package study

import "time"

// DemoUser is one person of the demo study and their one-time code.
type DemoUser struct {
	StudyCode string
	Role      Role
	Name      string
	Code      string
}

// DemoPeople are the people of the demo study: navigators PN-A, PN-B and
// PN-C, supervisor SUP-1 (assigned to all three) and researcher RES-1.
var DemoPeople = []DemoUser{
	{StudyCode: "PN-A", Role: RoleNavigator, Name: "Navigator A"},
	{StudyCode: "PN-B", Role: RoleNavigator, Name: "Navigator B"},
	{StudyCode: "PN-C", Role: RoleNavigator, Name: "Navigator C"},
	{StudyCode: "SUP-1", Role: RoleSupervisor, Name: "Supervisor 1"},
	{StudyCode: "RES-1", Role: RoleResearcher, Name: "Researcher 1"},
}

// DemoSupervisor is the demo supervisor, assigned to every demo navigator.
const DemoSupervisor = "SUP-1"

// DemoWaves are the demo study's four interview waves around today; wave
// 2 holds today.
func DemoWaves(today time.Time) []Wave {
	day := func(offset int) string { return today.AddDate(0, 0, offset).Format(time.DateOnly) }
	return []Wave{
		{1, "Baseline", day(-90), day(-31)},
		{2, "Mid-intervention", day(-30), day(30)},
		{3, "End of intervention", day(31), day(90)},
		{4, "Follow-up", day(91), day(180)},
	}
}
