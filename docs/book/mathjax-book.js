/* MathJax 2.7 settings for the book, loaded after the combined configuration (mkdocs.yml: config=...,local/book).
   jupyter-server-mathjax ships the STIX-Web fonts only (as the classic Jupyter Notebook used them), not MathJax's
   default TeX fonts: typeset with STIX-Web, never look for TeX fonts that are not there. */
MathJax.Hub.Config({
  "HTML-CSS": {availableFonts: [], preferredFont: null, imageFont: null, webFont: "STIX-Web"}
});
MathJax.Ajax.loadComplete("[MathJax]/config/local/book.js");
