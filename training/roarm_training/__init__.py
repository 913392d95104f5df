"""roarm-vla's offline pipeline: bag conversion, fine-tuning, evaluation, quantization (ROS-free)."""
