Feature: Shared and counted leases, and several resources at once
  A plan transition must exclude every other change to its plan and any
  project-wide operation, yet not the transitions of the project's other
  plans: it holds the project shared and the plan exclusive, together or
  not at all. "At most N of them at once" is a counted lease: a shared
  hold capped at N owners, each permit a lease of its own with its own
  owner, expiry and token.

  Rule: exclusive excludes every other hold; shared excludes only exclusive holds

    Scenario: readers share a resource, a writer is refused while they hold it
      Given worker "r1" holds project "apollo" shared
      When worker "r2" acquires project "apollo" shared
      Then worker "r2" is granted project "apollo" shared with a hold count of 1
      And project "apollo" has 2 holders
      When worker "w" acquires project "apollo"
      Then worker "w" is refused because project "apollo" is held shared by 2 workers
      And the refusal names worker "r1", the first to expire

    Scenario: a writer's exclusive hold refuses readers
      Given worker "w" holds project "apollo"
      When worker "r1" acquires project "apollo" shared
      Then worker "r1" is refused because worker "w" holds project "apollo"

  Rule: Permits caps the owners of a shared resource; the first holder records the cap

    Scenario: the owner past the cap is refused, and a free permit is taken again
      Given worker "a" holds job "model-api" shared with 2 permits
      And worker "b" holds job "model-api" shared with 2 permits
      When worker "c" acquires job "model-api" shared with 2 permits
      Then worker "c" is refused because job "model-api" is held shared by 2 workers
      And the refusal says the cap is 2
      When worker "a" releases job "model-api"
      And worker "c" acquires job "model-api" shared
      Then worker "c" is granted job "model-api" shared with a hold count of 1
      And the lease says the cap is 2

    Scenario: a request with another cap is invalid and names the recorded one
      Given worker "a" holds job "model-api" shared with 2 permits
      When worker "b" acquires job "model-api" shared with 3 permits
      Then the request is refused as invalid because of the Permits
      And the error names the recorded cap of 2
      And job "model-api" has 1 holder

  Rule: every holder's hold expires on its own

    Scenario: a dead reader blocks a writer no longer than its own TTL
      Given worker "r1" holds project "apollo" shared for 60 seconds
      And worker "r2" holds project "apollo" shared for 120 seconds
      When 61 seconds pass
      Then project "apollo" has 1 holder
      And worker "r2" still holds project "apollo" shared
      When worker "w" acquires project "apollo"
      Then worker "w" is refused because project "apollo" is held shared by 1 worker
      When 60 seconds pass
      And worker "w" acquires project "apollo"
      Then worker "w" is granted project "apollo" exclusive with a hold count of 1
      And its token is greater than the token worker "r2" was given

    Scenario: every reader keeps its own hold alive, and a reader that stops is dropped alone
      Given leases are renewed every 20 milliseconds
      And worker "r1" holds project "apollo" shared and keeps it alive
      And worker "r2" holds project "apollo" shared and keeps it alive
      When 8 minutes pass while the leases are kept alive
      And 8 minutes pass while the leases are kept alive
      Then project "apollo" has 2 holders
      And the keep-alive of worker "r2" on project "apollo" reports an expiry 600 seconds from now
      When worker "r1" stops keeping project "apollo" alive
      And 8 minutes pass while the leases are kept alive
      And 3 minutes pass while the leases are kept alive
      Then project "apollo" has 1 holder
      And worker "r2" still holds project "apollo" shared

  Rule: re-entry is per owner; an exclusive holder asking shared re-enters; a sole reader upgrades

    Scenario: a reader re-enters its shared hold
      Given worker "r1" holds project "apollo" shared
      When worker "r1" acquires project "apollo" shared again
      Then worker "r1" is granted project "apollo" shared with a hold count of 2
      And the lease keeps its fencing token

    Scenario: a writer asking shared re-enters its exclusive lease
      Given worker "w" holds plan "42"
      When worker "w" acquires plan "42" shared
      Then worker "w" is granted plan "42" exclusive with a hold count of 2
      And the lease keeps its fencing token

    Scenario: the sole reader upgrades to exclusive with a new token
      Given worker "r1" holds plan "42" shared
      When worker "r1" acquires plan "42"
      Then worker "r1" is granted plan "42" exclusive with a hold count of 2
      And the lease carries a new fencing token
      When worker "r2" acquires plan "42" shared
      Then worker "r2" is refused because worker "r1" holds plan "42"

    Scenario: two readers upgrading at once are both refused at once, never deadlocked
      Given worker "r1" holds plan "42" shared
      And worker "r2" holds plan "42" shared
      When workers "r1" and "r2" both ask for plan "42" exclusive at once, waiting up to 1 minute
      Then both are refused at once with an upgrade conflict
      And plan "42" has 2 holders

  Rule: a waiting writer is not overtaken by readers that come after it

    Scenario: readers arriving while a writer waits queue behind it, and the writer gets in first
      Given worker "r1" holds project "apollo" shared
      When worker "w" starts waiting up to 30 seconds for project "apollo"
      Then worker "w" is queued for project "apollo"
      When worker "r2" acquires project "apollo" shared
      Then worker "r2" is refused because 1 waiter is queued ahead for project "apollo"
      When worker "r1" releases project "apollo"
      Then worker "w" gets project "apollo" within 5 seconds
      And its token is greater than the token worker "r1" was given
      When worker "r2" acquires project "apollo" shared
      Then worker "r2" is refused because worker "w" holds project "apollo"

  Rule: every acquisition, in any mode, gets a token above every token issued before for the resource

    Scenario: tokens rise across shared and exclusive holds
      Given worker "r1" holds project "apollo" shared
      When worker "r2" acquires project "apollo" shared
      Then the lease carries a new fencing token
      And its token is greater than the token worker "r1" was given
      When worker "r1" releases project "apollo"
      And worker "r2" releases project "apollo"
      And worker "w" acquires project "apollo"
      Then the lease carries a new fencing token
      And its token is greater than the token worker "r2" was given
      When worker "w" releases project "apollo"
      And worker "r3" acquires project "apollo" shared
      Then its token is greater than the token worker "w" was given

  Rule: AcquireAll takes every claim or none, and never deadlocks

    Scenario: a plan transition holds its project shared and its plan exclusive
      Given worker "t1" holds all of project "apollo" shared, plan "1"
      When worker "t2" acquires all of project "apollo" shared, plan "2"
      Then worker "t2" is granted all of them
      And project "apollo" has 2 holders
      When worker "job" acquires project "apollo"
      Then worker "job" is refused because project "apollo" is held shared by 2 workers

    Scenario: a busy claim leaves every other claim free
      Given worker "w" holds plan "2"
      When worker "t" acquires all of project "apollo" shared, plan "1", plan "2"
      Then worker "t" is refused because worker "w" holds plan "2"
      And project "apollo" is free
      And plan "1" is free

    Scenario: {a, b} and {b, a} asked at once both finish
      When workers "x" and "y" hold all of plan "a", plan "b" and all of plan "b", plan "a" at once, 10 times, waiting up to 30 seconds
      Then every round of both was granted all of its claims
      And plan "a" is free
      And plan "b" is free

  Rule: a retried request (same request id) is applied once, in every mode

    Scenario: a retried shared acquisition counts once
      When store request "req-1" of worker "r1" takes project "apollo" shared
      And store request "req-1" of worker "r1" takes project "apollo" shared
      Then project "apollo" is held by worker "r1" shared with a hold count of 1
      And both answers carry the same token

    Scenario: a retried AcquireAll is applied once as a whole
      When store request "req-2" of worker "t" takes all of project "apollo" shared, plan "1"
      And store request "req-2" of worker "t" takes all of project "apollo" shared, plan "1"
      Then project "apollo" is held by worker "t" shared with a hold count of 1
      And plan "1" is held by worker "t" exclusive with a hold count of 1
      And both answers carry the same token

  Rule: Close releases shared holds and counted permits too

    Scenario: a worker that shuts down gives back its shared holds and permits
      Given worker "r1" holds project "apollo" shared
      And worker "r2" holds project "apollo" shared
      And worker "r1" holds job "model-api" shared with 3 permits
      When worker "r1" shuts down
      Then the shutdown succeeds
      And project "apollo" has 1 holder
      And worker "r2" still holds project "apollo" shared
      And job "model-api" is free
