# engine/dockerfile shell expansion + dockerignore.
