DROP TABLE saga_steps;
DROP TABLE saga_instances;
