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
		{Number: 1, Label: "Baseline", Start: day(-90), End: day(-31)},
		{Number: 2, Label: "Mid-intervention", Start: day(-30), End: day(30)},
		{Number: 3, Label: "End of intervention", Start: day(31), End: day(90)},
		{Number: 4, Label: "Follow-up", Start: day(91), End: day(180)},
	}
}
