Feature: Leader election
  Among workers that scale out, one leads: it schedules, the others wait
  their turn. The office of an election is an exclusive lease; its
  fencing token is the term, greater for every new leader, and the
  leader's value (an address, a version) is kept with it. Observers
  follow the office: every term, in order, every new value, and every
  vacancy.

  Scenario: a waiting candidate takes the office when the leader resigns
    Given an observer follows election "scheduler"
    Then the observer sees the office vacant
    Given worker "a" leads election "scheduler" with value "a:8080"
    Then the observer sees worker "a" lead with value "a:8080"
    When worker "b" campaigns for election "scheduler" with value "b:8080"
    Then the leader of election "scheduler" is worker "a" with value "a:8080"
    When worker "a" resigns from election "scheduler"
    Then worker "b" leads election "scheduler"
    And worker "b"'s term is greater than worker "a"'s
    And the observer sees the office vacant
    And the observer sees worker "b" lead with value "b:8080"

  Scenario: the leader proclaims a new value in its term
    Given worker "a" leads election "config" with value "v1"
    And an observer follows election "config"
    Then the observer sees worker "a" lead with value "v1"
    When worker "a" proclaims "v2" in election "config"
    Then the observer sees worker "a" lead with value "v2" in the same term
    And the leader of election "config" is worker "a" with value "v2"
    When worker "a" resigns from election "config"
    Then election "config" has no leader
    And the observer sees the office vacant
