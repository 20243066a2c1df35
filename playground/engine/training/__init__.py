"""Training: preparing a run, the Trainer and its events, the step, the schedule, keeping the
best weights, health hints, cost estimates, devices and the scaling ladder of runs."""
