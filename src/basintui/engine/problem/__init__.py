"""What is analysed: training inputs and targets, the model and its parameter layout, training."""
