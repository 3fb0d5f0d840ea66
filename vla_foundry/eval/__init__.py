"""Closed-loop evaluation in simulation: environments registered by name (`envs`), the evaluator (`sim`),
scripted demonstrations recorded as LeRobot datasets (`make_sim_demos`) and evaluation during training
(`during_training`). Heavy simulator imports happen inside the functions that use them."""
