"""S3 and SageMaker training jobs."""
