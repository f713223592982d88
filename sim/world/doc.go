// Package world is the simulator's harness: it runs the system under test
// against the fake platform of package sim. A World is a simulated PPaaS with
// an in-process agent and its virtual terminal; POS drives the agent's Nexo
// server as a cash register would (locally or through the Retail API relay);
// scenarios (ParseScenario, RunScenario) script a payment story and check
// what the POS, the agent's journal and the platform saw; RunFleet starts many
// agents against one platform; StartMosquitto runs a real broker for them.
// cmd/sim's up, demo, pos, run and fleet commands are thin shells over it.
package world
