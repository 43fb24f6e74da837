"""The model bundle, Classifier and SageMaker hosting: what a trained model is used through."""
