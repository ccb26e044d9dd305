"""dcgan-lab orchestration: configs, sweeps, tracking, reports and the command line."""
