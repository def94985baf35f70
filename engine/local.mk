# engine/: build context, COPY/ADD, stages, image config, export.
