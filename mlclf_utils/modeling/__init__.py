"""The encoder, the loss, the class weights and the training loop (stage 03)."""
