"""The project's commands. Run them from the project directory as ``python -m scripts.NAME``
(project.yml does): the project directory is then the one import root, so ``scripts.bench``
imports the same way in a command, a test and an interactive session."""
