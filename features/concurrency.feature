Feature: Leases on shared resources
  Workers that scale out horizontally take leases on named resources (a
  plan, a project, ...) so that only one of them works on a resource at a
  time. Each worker runs its own coordinator and uses its worker name as
  the lease owner; all of them share one Redis. A lease carries a fencing
  token, strictly greater than any token issued before for that resource,
  and an expiry taken from Redis's clock.

  Quoted values read like Go strings: "w\t1" holds a tab. Leases expire
  only when Redis's clock moves ("When 301 seconds pass"); nobody sleeps
  out a TTL. Renewals and waits run on the worker's own clock.

  Rule: a free resource is granted, with a new fencing token and the TTL of its type

    Scenario Outline: a <type> lease lasts <ttl> unless configured otherwise
      When worker "w1" acquires <type> "42"
      Then worker "w1" is granted <type> "42" with a hold count of 1
      And the lease carries a new fencing token
      And the lease expires <ttl> from now
      And <type> "42" is held by worker "w1" with a hold count of 1

      Examples:
        | type    | ttl         |
        | plan    | 300 seconds |
        | project | 600 seconds |
        | report  | 60 seconds  |
        | invoice | 1 minute    |

    Scenario: TTLs are configured per resource type, for other types, and per request
      Given coordinators give plan leases a TTL of 90 seconds
      And coordinators give leases of other types a TTL of 10 seconds
      When worker "w1" acquires plan "42"
      Then the lease expires 90 seconds from now
      When worker "w1" acquires report "q3"
      Then the lease expires 10 seconds from now
      When worker "w1" acquires project "7"
      Then the lease expires 600 seconds from now
      When worker "w1" acquires plan "43" for 45 seconds
      Then the lease expires 45 seconds from now
      When worker "w1" acquires plan "44" for 250 milliseconds
      Then the lease expires 250 milliseconds from now

    Scenario: leases on different resources do not interfere
      Given worker "w1" holds plan "1"
      When worker "w2" acquires plan "2"
      Then worker "w2" is granted plan "2" with a hold count of 1
      When worker "w3" acquires project "1"
      Then worker "w3" is granted project "1" with a hold count of 1
      And plan "1" is held by worker "w1" with a hold count of 1

  Rule: the holder may take its lease again (re-entrancy)

    Scenario: taking a held lease again counts up, keeps the token and refreshes the TTL
      Given worker "w1" holds plan "42"
      When 100 seconds pass
      And worker "w1" acquires plan "42" again
      Then worker "w1" is granted plan "42" with a hold count of 2
      And the lease keeps its fencing token
      And the lease expires 300 seconds from now
      When worker "w1" acquires plan "42" again
      Then worker "w1" is granted plan "42" with a hold count of 3
      And the lease keeps its fencing token
      And plan "42" is held by worker "w1" with a hold count of 3

    Scenario: taking a lease again never shortens it
      Given worker "w1" holds plan "42"
      When 100 seconds pass
      And worker "w1" acquires plan "42" again for 10 seconds
      Then worker "w1" is granted plan "42" with a hold count of 2
      And the lease expires 200 seconds from now

  Rule: another worker is refused, and told who holds the resource

    Scenario: a worker asking for a held resource learns the holder, token, hold count and expiry
      Given worker "w1" holds plan "42" 2 times
      When 100 seconds pass
      And worker "w2" acquires plan "42"
      Then worker "w2" is refused because worker "w1" holds plan "42"
      And the refusal shows the holder's token, a hold count of 2 and an expiry 200 seconds from now
      And plan "42" is held by worker "w1" with a hold count of 2
      And plan "42" expires 200 seconds from now

    Scenario: the owner name decides, not the coordinator
      Given worker "w1" holds project "7"
      When worker "W1" acquires project "7"
      Then worker "W1" is refused because worker "w1" holds project "7"
      And the refusal shows the holder's token, a hold count of 1 and an expiry 600 seconds from now

  Rule: the holder renews its lease to keep it past its TTL

    Scenario: a renewal pushes the expiry out and changes nothing else
      Given worker "w1" holds plan "42" 2 times
      When 200 seconds pass
      And worker "w1" renews plan "42"
      Then worker "w1" is granted plan "42" with a hold count of 2
      And the lease keeps its fencing token
      And the lease expires 300 seconds from now
      When 200 seconds pass
      Then plan "42" is held by worker "w1" with a hold count of 2
      And plan "42" expires 100 seconds from now

    Scenario: a renewal may ask for a TTL of its own
      Given worker "w1" holds report "q3"
      When worker "w1" renews report "q3" for 5 minutes
      Then the lease expires 300 seconds from now
      And the lease keeps its fencing token

    Scenario: a lease that ran out cannot be renewed
      Given worker "w1" holds plan "42"
      When 301 seconds pass
      And worker "w1" renews plan "42"
      Then the renewal is refused because the lease has expired
      And plan "42" is free

    Scenario: a free resource cannot be renewed
      When worker "w1" renews plan "42"
      Then the renewal is refused because the lease has expired
      And plan "42" is free

    Scenario: a worker cannot renew another worker's lease
      Given worker "w1" holds plan "42"
      When 100 seconds pass
      And worker "w2" renews plan "42"
      Then the renewal is refused because worker "w2" does not hold it
      And plan "42" is held by worker "w1" with a hold count of 1
      And plan "42" expires 200 seconds from now

  Rule: a lease that is not renewed expires, and the resource goes to the next worker with a greater token

    Scenario: a lease lasts its TTL and not longer
      Given worker "w1" holds plan "42"
      When 299 seconds pass
      Then plan "42" is held by worker "w1" with a hold count of 1
      When worker "w2" acquires plan "42"
      Then worker "w2" is refused because worker "w1" holds plan "42"
      When 2 seconds pass
      Then plan "42" is free
      When worker "w2" acquires plan "42"
      Then worker "w2" is granted plan "42" with a hold count of 1
      And the lease carries a new fencing token
      And its token is greater than the token worker "w1" was given

    Scenario: a re-entered lease expires as a whole
      Given worker "w1" holds project "7" 3 times
      When 10 minutes pass
      Then project "7" is free
      When worker "w1" acquires project "7"
      Then worker "w1" is granted project "7" with a hold count of 1
      And the lease carries a new fencing token

  Rule: releasing counts down; the last release frees the resource

    Scenario: a resource is free once every hold is released
      Given worker "w1" holds plan "42" 2 times
      When worker "w1" releases plan "42"
      Then the release leaves a hold count of 1
      And plan "42" is held by worker "w1" with a hold count of 1
      When worker "w1" releases plan "42"
      Then the release leaves a hold count of 0
      And plan "42" is free
      When worker "w2" acquires plan "42"
      Then worker "w2" is granted plan "42" with a hold count of 1
      And its token is greater than the token worker "w1" was given

    Scenario Outline: nobody releases what they do not hold
      Given worker "w1" holds plan "42"
      When worker "<worker>" releases <type> "<id>"
      Then the release is refused because worker "<worker>" does not hold it
      And plan "42" is held by worker "w1" with a hold count of 1

      Examples: another worker's lease
        | worker | type | id |
        | w2     | plan | 42 |

      Examples: a free resource
        | worker | type    | id |
        | w1     | plan    | 43 |
        | w2     | project | 42 |

    Scenario: a released lease cannot be released twice
      Given worker "w1" holds plan "42"
      When worker "w1" releases plan "42"
      Then the release leaves a hold count of 0
      When worker "w1" releases plan "42"
      Then the release is refused because worker "w1" does not hold it

  Rule: all leases of a worker can be released at once

    Scenario: an operator releases every lease of a worker, and only those
      Given worker "w1" holds plan "1"
      And worker "w1" holds plan "2" 3 times
      And worker "w1" holds project "7"
      And worker "w2" holds plan "3"
      And worker "w2" holds project "8" 2 times
      When an operator releases every lease of worker "w1"
      Then 3 leases were released
      And plan "1" is free
      And plan "2" is free
      And project "7" is free
      And plan "3" is held by worker "w2" with a hold count of 1
      And project "8" is held by worker "w2" with a hold count of 2
      When an operator releases every lease of worker "w1"
      Then 0 leases were released

    Scenario: leases that expired are not counted
      Given worker "w1" holds report "a"
      And worker "w1" holds plan "1"
      When 61 seconds pass
      And an operator releases every lease of worker "w1"
      Then 1 lease was released
      And plan "1" is free

  Rule: a worker that shuts down releases every lease it took

    Scenario: shutting down releases all holds of the worker and nothing else
      Given worker "w1" holds plan "1"
      And worker "w1" holds project "7" 3 times
      And worker "w2" holds plan "2"
      When worker "w1" shuts down
      Then the shutdown succeeds
      And plan "1" is free
      And project "7" is free
      And plan "2" is held by worker "w2" with a hold count of 1
      And worker "w1" can no longer take leases
      When worker "w1" shuts down again
      Then the shutdown succeeds

    Scenario: shutting down after a lease was lost is not an error
      Given worker "w1" holds plan "1"
      And worker "w1" holds report "r"
      When 61 seconds pass
      And worker "w2" acquires report "r"
      And worker "w1" shuts down
      Then the shutdown succeeds
      And plan "1" is free
      And report "r" is held by worker "w2" with a hold count of 1

  Rule: malformed requests are refused before Redis is touched

    Scenario Outline: <case>
      When worker "<owner>" asks for <type> "<id>" for <ttl>
      Then the request is refused as invalid because of the <field>
      And Redis received no command

      Examples:
        | case                             | owner    | type  | id       | ttl            | field         |
        | an upper-case type               | w1       | Plan  | 42       | 60 seconds     | resource type |
        | a type starting with a digit     | w1       | 9plan | 42       | 60 seconds     | resource type |
        | a type with punctuation          | w1       | plan! | 42       | 60 seconds     | resource type |
        | an empty id                      | w1       | plan  |          | 60 seconds     | resource id   |
        | an id with a NUL byte            | w1       | plan  | 4\x002   | 60 seconds     | resource id   |
        | an id with a newline             | w1       | plan  | 4\u000a2 | 60 seconds     | resource id   |
        | an id that is not UTF-8          | w1       | plan  | \xff     | 60 seconds     | resource id   |
        | an empty owner                   |          | plan  | 42       | 60 seconds     | owner         |
        | an owner with a tab              | w\t1     | plan  | 42       | 60 seconds     | owner         |
        | an owner with DEL                | w\x7f    | plan  | 42       | 60 seconds     | owner         |
        | an owner with a zero-width space | w\u200b1 | plan  | 42       | 60 seconds     | owner         |
        | a zero TTL                       | w1       | plan  | 42       | 0 seconds      | TTL           |
        | a negative TTL                   | w1       | plan  | 42       | -1 seconds     | TTL           |
        | a TTL under a millisecond        | w1       | plan  | 42       | 0 milliseconds | TTL           |

    Scenario Outline: names are 1 to 512 bytes: <bytes>-byte <what>
      When <request>
      Then <outcome>

      Examples:
        | bytes | what  | request                                                 | outcome                                                      |
        | 512   | owner | a worker whose name is 512 bytes long asks for plan "1" | the request is granted                                       |
        | 513   | owner | a worker whose name is 513 bytes long asks for plan "1" | the request is refused as invalid because of the owner       |
        | 512   | id    | worker "w1" asks for plan with an id of 512 bytes       | the request is granted                                       |
        | 513   | id    | worker "w1" asks for plan with an id of 513 bytes       | the request is refused as invalid because of the resource id |

    Scenario: a refused request changes nothing
      Given worker "w1" holds plan "42"
      When worker "w1" releases Plan "42"
      Then the request is refused as invalid because of the resource type
      And Redis received no command
      And plan "42" is held by worker "w1" with a hold count of 1

  Rule: work under a held lease keeps the lease alive for as long as it runs

    Scenario: a lease outlives its TTL while the work goes on
      Given leases are renewed every 20 milliseconds
      And worker "w1" is working on plan "42" under a lease it keeps alive
      When 4 minutes pass while the leases are kept alive
      And 4 minutes pass while the leases are kept alive
      And 4 minutes pass while the leases are kept alive
      Then plan "42" is held by worker "w1" with a hold count of 1
      And plan "42" expires 300 seconds from now
      And worker "w1" is still working on plan "42"
      When worker "w2" acquires plan "42"
      Then worker "w2" is refused because worker "w1" holds plan "42"
      When worker "w1" finishes its work on plan "42"
      Then the work of worker "w1" on plan "42" ends without error
      And plan "42" is free

    Scenario: a kept-alive lease is renewed until the keep-alive stops, then it expires
      Given leases are renewed every 20 milliseconds
      And worker "w1" holds project "7" and keeps it alive
      When 8 minutes pass while the leases are kept alive
      And 8 minutes pass while the leases are kept alive
      Then the keep-alive of worker "w1" on project "7" reports an expiry 600 seconds from now
      And project "7" is held by worker "w1" with a hold count of 1
      When worker "w1" stops keeping project "7" alive
      Then the keep-alive of worker "w1" on project "7" has ended without error
      And project "7" is held by worker "w1" with a hold count of 1
      When 601 seconds pass
      Then project "7" is free

  Rule: a worker is told as soon as its lease is lost, not by a failed write

    Scenario: the lease is taken away while the work runs
      Given leases are renewed every 20 milliseconds
      And worker "w1" is working on plan "42" under a lease it keeps alive
      When an operator takes every lease away from worker "w1"
      Then worker "w1" is told within 1 second that its lease on plan "42" was lost
      And the work of worker "w1" on plan "42" ends with the lease lost
      When worker "w2" acquires plan "42"
      Then worker "w2" is granted plan "42" with a hold count of 1
      And its token is greater than the token worker "w1" was given

    Scenario: the lease goes to another worker while the work runs
      Given leases are renewed every 20 milliseconds
      And worker "w1" is working on plan "42" under a lease it keeps alive
      When an operator takes every lease away from worker "w1"
      And worker "w2" acquires plan "42"
      Then worker "w2" is granted plan "42" with a hold count of 1
      And worker "w1" is told within 1 second that its lease on plan "42" was lost
      And the work of worker "w1" on plan "42" ends with the lease lost
      And plan "42" is held by worker "w2" with a hold count of 1

    Scenario: Redis loses its data while the work runs
      Given leases are renewed every 20 milliseconds
      And worker "w1" is working on plan "42" under a lease it keeps alive
      When Redis loses all its data
      Then worker "w1" is told within 1 second that its lease on plan "42" was lost
      And the work of worker "w1" on plan "42" ends with the lease lost
      When 1 second passes
      And worker "w2" acquires plan "42"
      Then worker "w2" is granted plan "42" with a hold count of 1
      And its token is greater than the token worker "w1" was given

  Rule: a worker may wait for a held resource instead of being refused at once

    Scenario: a waiting worker gets the resource when the holder releases it
      Given worker "w1" holds plan "42"
      When worker "w2" starts waiting up to 1 minute for plan "42"
      Then worker "w2" is still waiting for plan "42"
      When worker "w1" releases plan "42"
      Then worker "w2" gets plan "42" within 2 seconds
      And its token is greater than the token worker "w1" was given

    Scenario: a waiting worker gets the resource when the holder's lease runs out
      Given worker "w1" holds plan "42"
      When worker "w2" starts waiting up to 1 minute for plan "42"
      Then worker "w2" is still waiting for plan "42"
      When 301 seconds pass
      Then worker "w2" gets plan "42" within 3 seconds
      And its token is greater than the token worker "w1" was given

    Scenario: a worker that waited in vain is told who holds the resource
      Given worker "w1" holds plan "42" 2 times
      When worker "w2" waits up to 200 milliseconds for plan "42"
      Then worker "w2" is refused because worker "w1" holds plan "42"
      And the refusal shows the holder's token, a hold count of 2 and an expiry 300 seconds from now
      And plan "42" is held by worker "w1" with a hold count of 2

    Scenario: workers queue for a resource and take turns, one at a time
      When 8 workers take turns on plan "42", each waiting up to 20 seconds
      Then each of the 8 workers had exactly one turn
      And no two workers ever worked at the same time
      And every turn got a greater fencing token than the turn before
      And plan "42" is free

  Rule: a worker that shuts down stops its work and keep-alives and releases its leases

    Scenario: shutting down interrupts the work and releases everything
      Given leases are renewed every 20 milliseconds
      And worker "w1" is working on plan "42" under a lease it keeps alive
      And worker "w1" holds project "7" and keeps it alive
      And worker "w1" holds report "r" 2 times
      And worker "w2" holds plan "9"
      When worker "w1" shuts down
      Then the shutdown succeeds
      And the work of worker "w1" on plan "42" was stopped because the worker shuts down
      And the keep-alive of worker "w1" on project "7" has ended because the worker shut down
      And plan "42" is free
      And project "7" is free
      And report "r" is free
      And plan "9" is held by worker "w2" with a hold count of 1

    Scenario: a worker told to terminate finishes its work, then shuts down
      Given leases are renewed every 20 milliseconds
      And worker "w1" is working on plan "42" under a lease it keeps alive
      When worker "w1" is asked to terminate
      Then the work of worker "w1" on plan "42" was stopped because the worker's context ended
      And plan "42" is free
      When worker "w1" shuts down
      Then the shutdown succeeds

    Scenario: shutting down ends the worker's waits
      Given worker "w1" holds plan "42"
      When worker "w2" starts waiting up to 1 minute for plan "42"
      Then worker "w2" is still waiting for plan "42"
      When worker "w2" shuts down
      Then the shutdown succeeds
      And the wait of worker "w2" for plan "42" ends, refused, because the worker shuts down
      And plan "42" is held by worker "w1" with a hold count of 1

  Rule: the audit mirror keeps Postgres in step and finds holders that died without releasing

    Scenario: startup cleanup removes the leases of workers that died, and only those
      Given the audit mirror has a database
      And worker "w2" holds plan "2"
      When worker "w1" acquires plan "1" for 10 seconds
      And worker "w3" acquires plan "3" for 10 seconds
      And the mirror catches up
      Then the mirror shows 3 leases
      # w3 renews, but the mirror has not seen it yet: its row looks expired,
      # its lease lives in Redis with the same token, and must stay
      When worker "w3" renews plan "3" for 60 seconds
      And 11 seconds pass
      And the mirror cleans up at startup
      Then the cleanup moved plan "1" of worker "w1" to the ledger as expired
      And the mirror no longer shows plan "1"
      And the mirror shows plan "2" held by worker "w2"
      And the mirror shows plan "3" held by worker "w3"
      When the mirror catches up
      And the mirror cleans up at startup
      Then the cleanup moved nothing
      And the mirror shows 2 leases

    Scenario: diagnostics name the stale leases until cleanup removes them
      Given the audit mirror has a database
      And worker "w2" holds plan "2"
      When worker "w1" acquires plan "1" for 10 seconds
      And the mirror catches up
      And 11 seconds pass
      And the diagnostics run
      Then the diagnostics report 1 stale lease
      And the diagnostics name plan "1" of worker "w1" as stale
      And the diagnostics report 1 lease held in Redis and 0 missing from the mirror
      And the diagnostics are unhealthy when 0 stale leases are allowed
      And the diagnostics are healthy when 1 stale leases are allowed
      When the mirror cleans up at startup
      And the diagnostics run
      Then the diagnostics report 0 stale leases
      And the diagnostics are healthy when 0 stale leases are allowed

    Scenario: a lease the mirror never saw is reported missing
      Given the audit mirror has a database
      And worker "w1" holds plan "1"
      When 20 seconds pass
      And the diagnostics run
      Then the diagnostics report 1 lease held in Redis and 1 missing from the mirror
      When the mirror catches up
      And the diagnostics run
      Then the diagnostics report 1 lease held in Redis and 0 missing from the mirror
